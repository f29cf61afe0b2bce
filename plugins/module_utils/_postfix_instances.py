# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Postfix instances: create, import, register and remove, as postmulti(1) does.

Private to the mailfleet.postfix collection; the API may change without notice.

An instance is a config_directory, a queue_directory and a data_directory.
A secondary instance is listed in the primary's ``multi_instance_directories``
and names itself with ``multi_instance_name`` (which must start with
``postfix-``), so ``postmulti -l``, ``postqueue -c`` and ``postconf -c`` work
for it. New instances are built like ``postmulti -e create`` builds them
(``conf/postmulti-script``): main.cf and master.cf from the ``.proto`` files,
shared install parameters cloned from the primary when it sets them, then
``postfix -c DIR set-permissions`` creates the queue and data directories with
Postfix's own owners and modes (``postfix-files``).

Starting and stopping an instance is not done here: the orchestration modules
own that. Removal refuses while daemons still work in the queue directory, and
while the queue holds mail unless forced.
"""

from __future__ import annotations

import grp
import os
import posixpath
import pwd
import re
import shutil
import socket
import stat
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from ._host import CommandError, FileSpec, Host, LocalHost, Runner, Tools, apply, c_env, local_run, postconf_x, read_text, run_with_tty
from ._host_config import FileOpsError, validate_staged, write_config
from ._postfix_maincf import MainCf, Parameter
from ._postfix_mastercf import Entry, MasterCf, MasterCfError
from ._postfix_semantics import INSTANCE_PREFIX, Facts, InstanceNameError, instance_name, known_ports, running_entries, split_host_port

PRIMARY_NAMES = ("", "-")
STATES = ("present", "absent")
WRAPPER_MODES = ("init", "keep")
NAME_PREFIX = INSTANCE_PREFIX
# postmulti-script: install parameters a new instance shares with the primary. They are
# cloned when the primary sets them explicitly, and commented out otherwise.
SHARED_PARAMETERS = (
    "command_directory", "daemon_directory", "meta_directory", "mail_owner", "setgid_group",
    "sendmail_path", "mailq_path", "newaliases_path", "html_directory", "manpage_directory",
    "sample_directory", "readme_directory", "shlib_directory",
)
# Queue subdirectories that hold messages (not logs or sockets).
MAIL_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")
POSTMULTI_WRAPPER = "${command_directory}/postmulti -p --"
PRIMARY_PARAMS = (
    "config_directory", "queue_directory", "data_directory", "meta_directory", "mail_owner",
    "setgid_group", "multi_instance_directories", "alternate_config_directories",
    "multi_instance_wrapper", "multi_instance_enable",
)
INSTANCE_PARAMS = (
    "multi_instance_name", "multi_instance_group", "multi_instance_enable", "queue_directory",
    "data_directory", "master_service_disable", "mail_owner", "setgid_group", "meta_directory",
)
_LIST_SPLIT = re.compile(r"[\s,]+")
# The staged check appends its own queue/data directories to main.cf, so Postfix warns about
# any main.cf that sets them (every secondary instance's does): noise, not the user's doing.
_STAGE_NOISE = re.compile(r"overriding earlier entry: (queue|data)_directory=")


class InstanceError(Exception):
    """An instance request that cannot be carried out; the message says why and what to do."""


# --------------------------------------------------------------------------- Postfix access


class Postfix:
    """The Postfix commands this library runs; ``primary`` overrides the compiled-in default (tests)."""

    def __init__(self, tools: Optional[Tools] = None, *, primary: Optional[str] = None, run: Runner = local_run,
                 tty_run: Callable[..., tuple[int, str]] = run_with_tty) -> None:
        self.tools = tools or Tools.discover()
        self._primary = primary
        self._run = run
        self._tty_run = tty_run

    def _postconf_path(self) -> str:
        if self.tools.postconf is None:
            raise InstanceError("postconf was not found: is Postfix installed? (apt-get install postfix)")
        return self.tools.postconf

    def _postconf(self, *args: str) -> str:
        argv = [self._postconf_path(), *args]
        rc, out, err = self._run(argv)
        if rc != 0:
            raise InstanceError(f"{' '.join(argv)} failed: {(err or out).strip() or f'exit {rc}'}")
        return out

    def primary_directory(self) -> str:
        if self._primary is None:
            self._primary = self._postconf("-dh", "config_directory").strip()
        return self._primary

    def params(self, config_dir: str, names: Sequence[str]) -> dict[str, str]:
        """Effective values (``$name`` expanded) of ``names`` in one config directory."""
        try:
            values = postconf_x(self._run, config_dir, names, postconf=self._postconf_path())
        except CommandError as exc:
            raise InstanceError(str(exc)) from None
        missing = [n for n in names if n not in values]
        if missing:
            raise InstanceError(f"postconf -c {config_dir} returned no value for {', '.join(missing)}")
        return {n: values[n] for n in names}

    def set_permissions(self, config_dir: str) -> None:
        if self.tools.postfix is None:
            raise InstanceError("the postfix command was not found: is Postfix installed?")
        argv = [self.tools.postfix, "-c", config_dir, "set-permissions"]
        rc, out = self._tty_run(argv, env=c_env())
        if rc != 0:
            detail = "; ".join(x.strip() for x in out.splitlines() if x.strip()) or f"exit {rc}, see the mail log"
            raise InstanceError(f"postfix -c {config_dir} set-permissions failed: {detail}")


# --------------------------------------------------------------------------- requests and results


@dataclass(frozen=True)
class Request:
    name: str
    state: str = "present"
    config_directory: Optional[str] = None
    queue_directory: Optional[str] = None
    data_directory: Optional[str] = None
    group: Optional[str] = None
    enabled: bool = True
    master_service_disable: Optional[str] = None
    wrapper: str = "init"
    force: bool = False
    backup: bool = False
    listen: tuple[str, ...] = ()

    @property
    def primary(self) -> bool:
        return self.name.strip() in PRIMARY_NAMES


@dataclass
class FileChange:
    path: str
    before: str
    after: str

    def diff(self) -> dict[str, str]:
        return {"before_header": self.path, "after_header": self.path, "before": self.before, "after": self.after}


@dataclass
class Result:
    name: str
    config_directory: str
    queue_directory: str
    data_directory: str
    changed: bool = False
    created: bool = False
    removed: bool = False
    registered: bool = False
    queued: int = 0
    actions: list[str] = field(default_factory=list)
    files: list[FileChange] = field(default_factory=list)
    backups: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def act(self, what: str) -> None:
        self.changed = True
        self.actions.append(what)


@dataclass(frozen=True)
class Primary:
    config_directory: str
    queue_directory: str
    data_directory: str
    meta_directory: str
    directories: tuple[str, ...]  # multi_instance_directories
    alternates: tuple[str, ...]
    wrapper: str
    enable: str

    @classmethod
    def read(cls, postfix: Postfix) -> Primary:
        path = postfix.primary_directory()
        if not os.path.isfile(os.path.join(path, "main.cf")):
            raise InstanceError(f"the primary Postfix instance has no {path}/main.cf: is Postfix installed?")
        p = postfix.params(path, PRIMARY_PARAMS)
        return cls(config_directory=_norm(path), queue_directory=_norm(p["queue_directory"]),
                   data_directory=_norm(p["data_directory"]), meta_directory=p["meta_directory"],
                   directories=tuple(_norm(d) for d in split_list(p["multi_instance_directories"])),
                   alternates=tuple(_norm(d) for d in split_list(p["alternate_config_directories"])),
                   wrapper=p["multi_instance_wrapper"].strip(), enable=p["multi_instance_enable"].strip())


@dataclass(frozen=True)
class Known:
    """A registered secondary instance, as its main.cf describes it."""

    config_directory: str
    name: str
    queue_directory: str
    data_directory: str


# --------------------------------------------------------------------------- pure helpers


def quiet(warnings: Sequence[str]) -> list[str]:
    return [w for w in warnings if not _STAGE_NOISE.search(w)]


def split_list(value: str) -> list[str]:
    return [x for x in _LIST_SPLIT.split(value.strip()) if x]


def _norm(path: str) -> str:
    return posixpath.normpath(path.strip()) if path.strip() else ""


def validate_name(name: str) -> None:
    """A named instance ('postfix-NAME'), by the rule both orchestration modes share (_postfix_semantics)."""
    try:
        if instance_name(name) == "-":
            raise InstanceNameError("'-' is the primary instance, not a named one")
    except InstanceNameError as exc:
        raise InstanceError(f"{exc.reason}; the name is not valid: use '-' for the primary instance, or "
                            f"'{NAME_PREFIX}NAME' (letters, digits, '_', '.', '-'), as multi_instance_name requires") from exc


def default_path(primary_path: str, name: str) -> str:
    """postmulti's default: the primary's path with its last component replaced by the name."""
    return posixpath.join(posixpath.dirname(_norm(primary_path)), name)


def comment_out(doc: MainCf, name: str) -> bool:
    """Turn every definition of ``name`` into a comment, as ``postconf -#`` does."""
    changed = False
    for idx, block in enumerate(doc.blocks):
        if isinstance(block, Parameter) and block.name == name:
            doc.blocks[idx] = ["#" + line for line in block.lines]
            changed = True
    return changed


def new_main_cf(proto: str, primary_main_cf: str, settings: Mapping[str, Optional[str]], *, path: str = "main.cf") -> str:
    """main.cf of a new instance: the prototype, shared parameters cloned, then ``settings``."""
    doc = MainCf.parse(proto, path=path)
    explicit = MainCf.parse(primary_main_cf).parameters()
    for name in SHARED_PARAMETERS:
        if explicit.get(name, "").strip():
            doc.set(name, explicit[name])
        else:
            comment_out(doc, name)
    for name, value in settings.items():
        doc.set(name, value)
    return doc.render()


def set_params(text: str, settings: Mapping[str, Optional[str]], *, path: str) -> str:
    doc = MainCf.parse(text, path=path)
    for name, value in settings.items():
        doc.set(name, value)
    return doc.render()


def register_settings(primary: Primary, config_dir: str, *, add: bool, wrapper: str) -> dict[str, Optional[str]]:
    """Parameters of the primary's main.cf that (de)register ``config_dir``; only what must change."""
    out: dict[str, Optional[str]] = {}
    dirs = [d for d in primary.directories if d != config_dir]
    if add:
        dirs.append(config_dir)
    if list(primary.directories) != dirs:
        out["multi_instance_directories"] = " ".join(dirs)
    if config_dir in primary.alternates:
        out["alternate_config_directories"] = " ".join(d for d in primary.alternates if d != config_dir)
    if add and wrapper == "init":
        # postmulti -e init; a wrapper someone else installed (the systemd_units module's) is kept.
        if not primary.wrapper:
            out["multi_instance_wrapper"] = POSTMULTI_WRAPPER
        if primary.enable != "yes":
            out["multi_instance_enable"] = "yes"
    return out


@dataclass(frozen=True)
class PathRule:
    """One directory line of postfix-files: path, owner, group, mode (None = not checked)."""

    path: str
    owner: Optional[str]
    group: Optional[str]
    mode: int


def permission_rules(postfix_files: str, values: Mapping[str, str]) -> list[PathRule]:
    """Directory rules of postfix-files for config, queue and data directories, ``$name`` resolved."""
    rules = []
    for line in postfix_files.splitlines():
        parts = line.strip().split(":")
        if line.startswith("#") or len(parts) < 5 or parts[1] != "d":
            continue
        head = parts[0].split("/", 1)
        if head[0] not in ("$config_directory", "$queue_directory", "$data_directory"):
            continue
        base = values[head[0][1:]]
        path = posixpath.join(base, head[1]) if len(head) > 1 else base
        rules.append(PathRule(path, _resolve(parts[2], values), _resolve(parts[3], values), int(parts[4], 8)))
    return rules


def _resolve(value: str, values: Mapping[str, str]) -> Optional[str]:
    if value in ("-", ""):
        return None
    return values.get(value[1:], value) if value.startswith("$") else value


def permission_drift(rules: Sequence[PathRule], *, lookup: Callable[[str], Optional[os.stat_result]]) -> list[str]:
    """What set-permissions would fix: missing directories, wrong owner, group or mode."""
    drift = []
    for rule in rules:
        info = lookup(rule.path)
        if info is None or not stat.S_ISDIR(info.st_mode):
            drift.append(f"{rule.path}: missing")
            continue
        if rule.owner is not None and _uid(rule.owner) != info.st_uid:
            drift.append(f"{rule.path}: owner is not {rule.owner}")
        if rule.group is not None and _gid(rule.group) != info.st_gid:
            drift.append(f"{rule.path}: group is not {rule.group}")
        if stat.S_IMODE(info.st_mode) != rule.mode:
            drift.append(f"{rule.path}: mode {stat.S_IMODE(info.st_mode):04o}, Postfix wants {rule.mode:04o}")
    return drift


def _uid(name: str) -> Optional[int]:
    try:
        return int(pwd.getpwnam(name).pw_uid)
    except KeyError:
        return None


def _gid(name: str) -> Optional[int]:
    try:
        return int(grp.getgrnam(name).gr_gid)
    except KeyError:
        return None


def _stat(path: str) -> Optional[os.stat_result]:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def count_queued(queue_directory: str) -> int:
    """Messages in the queue (maildrop to hold, hashed subdirectories included)."""
    total = 0
    for sub in MAIL_QUEUES:
        for _here, _dirs, files in os.walk(os.path.join(queue_directory, sub)):
            total += len(files)
    return total


def processes_in(directory: str, *, proc: str = "/proc") -> list[int]:
    """PIDs whose working or root directory is ``directory`` or below: the instance's daemons."""
    found = []
    root = _norm(os.path.realpath(directory))
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return []
    for pid in pids:
        for link in ("cwd", "root"):
            try:
                target = os.readlink(os.path.join(proc, pid, link))
            except OSError:
                continue
            if target == root or target.startswith(root + "/"):
                found.append(int(pid))
                break
    return sorted(found)


# --------------------------------------------------------------------------- listeners

WILDCARD = "*"
_WILDCARDS = ("", "all", "0.0.0.0", "::", "[::]", WILDCARD)


@dataclass(frozen=True)
class Listener:
    host: str  # an address, a host name, or "*" for every address
    port: str  # a port number where it can be resolved
    origin: str = ""  # where it comes from, for messages

    def overlaps(self, other: Listener) -> bool:
        return self.port == other.port and (self.host == other.host or WILDCARD in (self.host, other.host))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def port_number(name: str, facts: Optional[Facts] = None) -> str:
    if name.isdigit():
        return name
    table = known_ports(facts or Facts())  # known_tcp_ports; other names go through the services database
    if name in table:
        return str(table[name])
    try:
        return str(socket.getservbyname(name, "tcp"))
    except OSError:
        return name


def _host(value: str) -> str:
    value = value.strip().strip("[]").lower()
    return WILDCARD if value in _WILDCARDS else value


def parse_listener(text: str, *, origin: str = "") -> Listener:
    """``address:port``, ``[v6]:port``, ``name:port`` or a bare port (every address)."""
    host, port = split_host_port(text.strip())
    if not port:
        raise InstanceError(f"listen address '{text}' has no port; write ADDRESS:PORT or PORT")
    return Listener(_host(host), port_number(port), origin)


def interfaces(value: str) -> list[str]:
    words = split_list(value) or ["all"]
    out: list[str] = []
    for word in words:
        if word == "loopback-only":
            out += ["127.0.0.1", "::1"]
        elif word == "localhost":
            out.append("127.0.0.1")
        else:
            out.append(_host(word))
    return out


def inet_endpoints(master_cf: str, params: Mapping[str, str], *, origin: str) -> list[tuple[Entry, str, str]]:
    """(entry, address, port) for each TCP endpoint master(8) (or systemd) listens on for an instance.

    The entries master(8) runs (master_service_disable, inet_protocols and duplicates applied); an
    entry without an address listens on each of inet_interfaces."""
    facts = Facts.from_mapping(params, source=origin)
    out: list[tuple[Entry, str, str]] = []
    for entry in running_entries(MasterCf.parse(master_cf, path=origin), facts, path=origin)[0]:
        if entry.type != "inet":
            continue
        host, port = split_host_port(entry.service)
        number = port_number(port, facts)
        out += [(entry, h, number) for h in ([_host(host)] if host else interfaces(params.get("inet_interfaces", "all")))]
    return out


def configured_listeners(master_cf: str, params: Mapping[str, str], *, origin: str) -> list[Listener]:
    """The TCP listeners an instance's master.cf and main.cf ask master (or systemd) for."""
    return [Listener(address, port, f"{origin} '{entry.service} inet' (line {entry.first_line})")
            for entry, address, port in inet_endpoints(master_cf, params, origin=origin)]


def conflicts(wanted: Sequence[Listener], others: Sequence[Listener]) -> list[str]:
    return [f"{mine} overlaps {theirs} from {theirs.origin}" for mine in wanted for theirs in others if mine.overlaps(theirs)]


# Address scopes for the roles' "internal address only" rule. Listed, not ipaddress's is_private,
# whose ranges change between Python releases. Shared (RFC 6598, carrier NAT) and link-local
# addresses are reachable by others than the owner's hosts: not internal.
INTERNAL_SCOPES = ("loopback", "private", "unique-local")
_SCOPES = (
    ("unspecified", ("0.0.0.0/32", "::/128")),
    ("loopback", ("127.0.0.0/8", "::1/128")),
    ("private", ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")),  # RFC 1918
    ("unique-local", ("fc00::/7",)),  # RFC 4193
    ("shared", ("100.64.0.0/10",)),  # RFC 6598
    ("link-local", ("169.254.0.0/16", "fe80::/10")),
)


def _ip(text: str) -> Any:
    """An ipaddress address for ``1.2.3.4``, ``2001:db8::1``, ``[2001:db8::1]``, ``fe80::1%eth0``; else None."""
    import ipaddress

    value = text.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    try:
        address = ipaddress.ip_address(value.split("%", 1)[0] if ":" in value else value)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:10.0.0.1 is 10.0.0.1 on the wire
    return mapped or address


def address_scope(text: str) -> str:
    """'loopback', 'private', 'unique-local', 'shared', 'link-local', 'unspecified', 'public',
    or 'name' for anything that is not one IP address (a host name, 'all', a list)."""
    import ipaddress

    address = _ip(text)
    if address is None:
        return "name"
    for scope, networks in _SCOPES:
        if any(address in ipaddress.ip_network(net) for net in networks):
            return scope
    return "public"


def mynetworks_entry(text: str) -> str:
    """An address or network as Postfix's mynetworks wants it: 10.0.0.1/32, [2001:db8::1]/128,
    [2001:db8::]/64. Anything else (a table, a file, a name) is returned unchanged."""
    import ipaddress

    value = text.strip()
    host, slash, length = value.partition("/")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        network = ipaddress.ip_network(f"{host}/{length}" if slash else host, strict=False)
    except ValueError:
        return text
    address = ipaddress.ip_address(host) if not slash else network.network_address
    if network.version == 6:
        return f"[{address}]/{network.prefixlen}"
    return f"{address}/{network.prefixlen}"


# --------------------------------------------------------------------------- the operations


class Manager:
    """Carries out one Request against the host's Postfix."""

    def __init__(self, request: Request, *, postfix: Optional[Postfix] = None, host: Optional[Host] = None,
                 check_mode: bool = False, proc: str = "/proc") -> None:
        self.req = request
        self.postfix = postfix or Postfix()
        self.host = host or LocalHost()
        self.check_mode = check_mode
        self.proc = proc
        self.backups: dict[str, str] = {}
        self.notes: list[str] = []  # warnings found before the Result exists

    def run(self) -> Result:
        if self.req.state not in STATES:
            raise InstanceError(f"state '{self.req.state}' is not one of {', '.join(STATES)}")
        if self.req.wrapper not in WRAPPER_MODES:
            raise InstanceError(f"multi_instance_wrapper '{self.req.wrapper}' is not one of {', '.join(WRAPPER_MODES)}")
        if not self.req.primary:
            validate_name(self.req.name)  # before anything is read or derived from it
        primary = Primary.read(self.postfix)
        known = self._known(primary)
        if self.req.state == "present" and self.req.listen:
            self._check_listeners(primary, known)
        if self.req.primary:
            return self._primary(primary)
        if self.req.state == "absent":
            return self._absent(primary, known)
        return self._present(primary, known)

    # -- lookup

    def _known(self, primary: Primary) -> list[Known]:
        out = []
        for path in primary.directories:
            if not os.path.isfile(os.path.join(path, "main.cf")):
                continue
            p = self.postfix.params(path, ("multi_instance_name", "queue_directory", "data_directory"))
            out.append(Known(path, p["multi_instance_name"].strip(), _norm(p["queue_directory"]), _norm(p["data_directory"])))
        return out

    def _locate(self, primary: Primary, known: list[Known]) -> tuple[str, Optional[Known]]:
        """The config directory the request means, and the registered instance there, if any."""
        by_name = [k for k in known if k.name == self.req.name]
        wanted = _norm(self.req.config_directory) if self.req.config_directory else None
        if by_name and wanted and by_name[0].config_directory != wanted:
            raise InstanceError(
                f"instance {self.req.name} is registered with config directory {by_name[0].config_directory}, "
                f"not {wanted}; remove it first or use its directory"
            )
        path = wanted or (by_name[0].config_directory if by_name else default_path(primary.config_directory, self.req.name))
        if path == primary.config_directory:
            raise InstanceError(f"{path} is the primary instance's config directory; name the primary instance '-'")
        there = next((k for k in known if k.config_directory == path), None)
        return path, there

    def _check_listeners(self, primary: Primary, known: list[Known]) -> None:
        """Refuse before any change when another instance here serves an overlapping address."""
        wanted = [parse_listener(x) for x in self.req.listen]
        mine = primary.config_directory if self.req.primary else self._locate(primary, known)[0]
        others = [primary.config_directory] + [k.config_directory for k in known]
        found = []
        for config_dir in others:
            if config_dir == mine or not os.path.isfile(os.path.join(config_dir, "master.cf")):
                continue
            params = self.postfix.params(config_dir, ("multi_instance_name", "inet_interfaces", "inet_protocols",
                                                      "master_service_disable"))
            name = params["multi_instance_name"].strip() or ("-" if config_dir == primary.config_directory else config_dir)
            path = os.path.join(config_dir, "master.cf")
            try:
                found += configured_listeners(read_text(path), params, origin=f"instance {name}: {path}")
            except MasterCfError as exc:
                raise InstanceError(f"cannot read the listeners of instance {name}: {exc}") from exc
        clash = conflicts(wanted, found)
        if not clash:
            return
        message = (f"instance {self.req.name} would listen where another instance on this host does: "
                   f"{'; '.join(clash)}. Give each instance its own address or port.")
        if not self.check_mode:
            raise InstanceError(message)
        # Earlier tasks may move the other instance in the real run; check mode cannot see that.
        self.notes.append(f"{message} (check mode: the other instance's configuration may still be about to change)")

    # -- primary

    def _primary(self, primary: Primary) -> Result:
        if self.req.state == "absent":
            raise InstanceError("the primary instance cannot be removed (it is the default config_directory)")
        result = Result(name="-", config_directory=primary.config_directory, queue_directory=primary.queue_directory,
                        data_directory=primary.data_directory, registered=True)
        for option, actual in (("config_directory", primary.config_directory), ("queue_directory", primary.queue_directory),
                               ("data_directory", primary.data_directory)):
            asked = getattr(self.req, option)
            if asked and _norm(asked) != actual:
                raise InstanceError(f"the primary instance's {option} is {actual} (set in its main.cf); {asked} was requested")
        result.queued = count_queued(primary.queue_directory) if os.path.isdir(primary.queue_directory) else 0
        return result

    # -- present

    def _present(self, primary: Primary, known: list[Known]) -> Result:
        config_dir, there = self._locate(primary, known)
        main_cf = os.path.join(config_dir, "main.cf")
        exists = os.path.isfile(main_cf) and os.path.isfile(os.path.join(config_dir, "master.cf"))
        if os.path.isfile(main_cf) != os.path.isfile(os.path.join(config_dir, "master.cf")):
            raise InstanceError(f"{config_dir} has only one of main.cf and master.cf; complete or remove it first")
        if there and there.name != self.req.name:
            raise InstanceError(f"{config_dir} is registered as instance '{there.name or '(no name)'}', not {self.req.name}")
        current = self.postfix.params(config_dir, INSTANCE_PARAMS) if exists else {}
        queue_dir, data_dir = self._directories(primary, known, config_dir, current)
        result = Result(name=self.req.name, config_directory=config_dir, queue_directory=queue_dir, data_directory=data_dir)
        if exists:
            self._update_instance(result)
        else:
            self._create_instance(result, primary)
        self._register(result, primary, add=True)
        self._permissions(result, primary, current)
        result.registered = True
        result.queued = count_queued(queue_dir) if os.path.isdir(queue_dir) else 0
        return result

    def _directories(self, primary: Primary, known: list[Known], config_dir: str,
                     current: Mapping[str, str]) -> tuple[str, str]:
        out = []
        for option in ("queue_directory", "data_directory"):
            base = getattr(primary, option)
            have = _norm(current.get(option, ""))
            asked = _norm(getattr(self.req, option) or "")
            # An imported copy of the primary's main.cf still points at the primary's queue.
            path = asked or (have if have and have != base else default_path(base, self.req.name))
            if path in (primary.queue_directory, primary.data_directory):
                raise InstanceError(f"{option} {path} belongs to the primary instance; each instance needs its own")
            for other in known:
                if other.config_directory != config_dir and path in (other.queue_directory, other.data_directory):
                    raise InstanceError(f"{option} {path} belongs to instance {other.name} ({other.config_directory})")
            if option == "queue_directory" and have and have != path and os.path.isdir(have) and count_queued(have):
                raise InstanceError(
                    f"{self.req.name}: queue_directory would move from {have} to {path} while {have} holds "
                    f"{count_queued(have)} message(s); deliver or move them first (postqueue -c {config_dir} -f)"
                )
            out.append(path)
        return out[0], out[1]

    def _instance_settings(self, result: Result, *, new: bool) -> dict[str, Optional[str]]:
        settings: dict[str, Optional[str]] = {
            "queue_directory": result.queue_directory,
            "data_directory": result.data_directory,
            "multi_instance_name": self.req.name,
            "multi_instance_enable": "yes" if self.req.enabled else "no",
        }
        if self.req.group is not None:
            settings["multi_instance_group"] = self.req.group or None
        if self.req.master_service_disable is not None:
            settings["master_service_disable"] = self.req.master_service_disable
        elif new:
            settings["master_service_disable"] = "inet"  # postmulti's default for new instances
        if new:
            settings["authorized_submit_users"] = ""
        return settings

    def _update_instance(self, result: Result) -> None:
        path = os.path.join(result.config_directory, "main.cf")
        before = read_text(path)
        settings = self._instance_settings(result, new=False)
        after = set_params(before, settings, path=path)
        if after == before:
            return
        old, new = MainCf.parse(before).parameters(), MainCf.parse(after).parameters()
        changed = [n for n in settings if old.get(n) != new.get(n)]
        outcome = self._write(result.config_directory, before, after)
        result.files.append(FileChange(path, before, after))
        result.act(f"set {', '.join(changed) or 'instance parameters'} in {path}")
        result.warnings.extend(outcome)

    def _create_instance(self, result: Result, primary: Primary) -> None:
        meta = primary.meta_directory
        protos = {name: os.path.join(meta, f"{name}.proto") for name in ("main.cf", "master.cf")}
        for proto in protos.values():
            if not os.path.isfile(proto):
                raise InstanceError(f"missing prototype {proto} (meta_directory = {meta}); is Postfix fully installed?")
        main = new_main_cf(read_text(protos["main.cf"]), read_text(os.path.join(primary.config_directory, "main.cf")),
                           self._instance_settings(result, new=True), path=protos["main.cf"])
        contents = {"main.cf": main, "master.cf": read_text(protos["master.cf"])}
        warnings = self._validate_new(contents)
        config_dir = result.config_directory
        for name, text in contents.items():
            result.files.append(FileChange(os.path.join(config_dir, name), "", text))
        result.created = True
        result.act(f"create instance {self.req.name} in {config_dir} from {meta}/main.cf.proto and master.cf.proto")
        result.warnings.extend(warnings)
        if self.check_mode:
            return
        os.makedirs(config_dir, mode=0o755, exist_ok=True)
        # master.cf last: once it is there the instance is complete (postmulti-script does the same).
        for name in ("main.cf", "master.cf"):
            _write_new(os.path.join(config_dir, name), contents[name])

    def _validate_new(self, contents: Mapping[str, str]) -> list[str]:
        stage = tempfile.mkdtemp(prefix="mailfleet-instance-", dir=self.host.tmpdir)
        try:
            for name, text in contents.items():
                _write_new(os.path.join(stage, name), text)
            outcome = validate_staged(stage, {}, tmpdir=self.host.tmpdir, tools=self.postfix.tools)
        except FileOpsError as exc:
            raise InstanceError(f"Postfix refused the new instance's configuration: {exc}") from exc
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return quiet(outcome.warnings)

    def _write(self, config_dir: str, before: str, after: str) -> list[str]:
        try:
            outcome = write_config(self.host, config_dir=config_dir, contents={"main.cf": after},
                                   backup=self.req.backup, check_mode=self.check_mode, tools=self.postfix.tools)
        except FileOpsError as exc:
            raise InstanceError(str(exc)) from exc
        self.backups.update(outcome.backups)
        return quiet(outcome.warnings)

    def _register(self, result: Result, primary: Primary, *, add: bool) -> None:
        settings = register_settings(primary, result.config_directory, add=add, wrapper=self.req.wrapper)
        if not settings:
            return
        path = os.path.join(primary.config_directory, "main.cf")
        before = read_text(path)
        after = set_params(before, settings, path=path)
        if after == before:
            return
        result.warnings.extend(self._write(primary.config_directory, before, after))
        result.files.append(FileChange(path, before, after))
        verb = "register" if add else "deregister"
        result.act(f"{verb} {result.config_directory} in {path} ({', '.join(settings)})")

    def _permissions(self, result: Result, primary: Primary, current: Mapping[str, str]) -> None:
        meta = current.get("meta_directory") or primary.meta_directory
        files = os.path.join(meta, "postfix-files")
        if result.created or not os.path.isfile(files):
            drift = ["new instance"] if result.created else [f"{files} not found"]
        else:
            owner = self.postfix.params(result.config_directory, ("mail_owner", "setgid_group"))
            values = {"config_directory": result.config_directory, "queue_directory": result.queue_directory,
                      "data_directory": result.data_directory, **owner}
            drift = permission_drift(permission_rules(read_text(files), values), lookup=_stat)
        if not drift:
            return
        result.act(f"postfix -c {result.config_directory} set-permissions ({'; '.join(drift[:3])}"
                   f"{'; …' if len(drift) > 3 else ''})")
        if self.check_mode:
            return
        for path, mode in ((result.queue_directory, 0o755), (result.data_directory, 0o700)):
            os.makedirs(path, mode=mode, exist_ok=True)
        self.postfix.set_permissions(result.config_directory)

    # -- absent

    def _absent(self, primary: Primary, known: list[Known]) -> Result:
        config_dir, there = self._locate(primary, known)
        main_cf = os.path.join(config_dir, "main.cf")
        current = self.postfix.params(config_dir, INSTANCE_PARAMS) if os.path.isfile(main_cf) else {}
        if current and current["multi_instance_name"].strip() not in ("", self.req.name):
            raise InstanceError(f"{config_dir} belongs to instance '{current['multi_instance_name']}', not {self.req.name}")
        queue_dir = _norm(current.get("queue_directory", "")) or (there.queue_directory if there else "")
        data_dir = _norm(current.get("data_directory", "")) or (there.data_directory if there else "")
        result = Result(name=self.req.name, config_directory=config_dir, queue_directory=queue_dir, data_directory=data_dir)
        paths = [p for p in (queue_dir, data_dir, config_dir) if p and os.path.lexists(p)]
        if not paths and config_dir not in primary.directories + primary.alternates:
            return result
        for path in paths:
            _refuse_unsafe_removal(path, primary)
        if queue_dir and os.path.isdir(queue_dir):
            result.queued = count_queued(queue_dir)
            busy = processes_in(queue_dir, proc=self.proc)
            if busy:
                raise InstanceError(
                    f"instance {self.req.name} is running (processes {', '.join(map(str, busy[:10]))} work in {queue_dir}); "
                    "stop it before removing it"
                )
            if result.queued and not self.req.force:
                raise InstanceError(
                    f"instance {self.req.name} still holds {result.queued} message(s) in {queue_dir}; deliver them "
                    f"(postqueue -c {config_dir} -f), move them, or set force=true to delete them"
                )
        self._register(result, primary, add=False)
        if os.path.isfile(main_cf):
            result.files.append(FileChange(main_cf, read_text(main_cf), ""))
        for path in paths:
            lost = f" ({result.queued} queued message(s) deleted)" if path == queue_dir and result.queued else ""
            result.act(f"remove {path}{lost}")
            if not self.check_mode:
                _remove(path)
        result.removed = True
        return result


def _refuse_unsafe_removal(path: str, primary: Primary) -> None:
    real = _norm(os.path.realpath(path))
    protected = (primary.config_directory, primary.queue_directory, primary.data_directory)
    depth = len([p for p in real.split("/") if p])
    if depth < 2 or any(real == p or p.startswith(real + "/") for p in protected):
        raise InstanceError(f"refusing to remove {path}: it is, or contains, a system or primary-instance directory")


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _write_new(path: str, text: str) -> None:
    apply(FileSpec(path, content=text, mode=0o644))


def run(request: Request, **kwargs: Any) -> Result:
    """Carry out ``request``; raises InstanceError with a message meant for the user."""
    manager = Manager(request, **kwargs)
    result = manager.run()
    result.backups = manager.backups
    result.warnings = manager.notes + result.warnings
    return result
