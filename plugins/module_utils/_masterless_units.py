# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""master.cf entries + main.cf facts -> systemd units for master-less Postfix.

Private to the mailfleet.postfix collection; the API may change without notice.

Every active master.cf entry becomes a ``.socket`` (its listener, created by
systemd exactly where and how master(8) would create it) plus a ``.service``
running the stock daemon, and a ``.timer`` for its ``wakeup`` column. Each
instance gets one ``.target`` (start/stop the instance), one ``.slice``
(accounting) and one status holder (see ``_masterless_bridge``).

The ``DAEMONS`` table below decides, per daemon, how it runs:

* ``ACCEPT``: ``Accept=yes`` socket, one ``<daemon> -S`` per connection. Only
  single-server daemons (and pickup) can run stand-alone, and every start costs a
  full daemon initialisation plus systemd bookkeeping (11.6x slower than master
  for smtpd/cleanup/local under load), so only low-rate services use it.
* ``POOL``: ``Accept=no`` socket and long-running workers started through the
  bridge, which rebuilds master's file descriptors (flow pipe on 3/4, status on
  5, listeners from 6). With maxproc != 1 the service is a template: ``@1`` is
  socket-activated, the status holder starts ``@2..@maxproc`` while every worker
  is busy and a client waits, and idle workers exit by themselves (max_idle).

Differences from master's argv (everything else is built as master_ent.c does):
``-u`` is left out where systemd starts the daemon as mail_owner, ``-c`` is left
out unless ``chroot=postfix`` (chroot is expressed as sandboxing, see
``_systemd_sandbox``), ``-S`` is added and ``-s`` dropped in ACCEPT mode.
"""

from __future__ import annotations

import posixpath

from . import _postfix_semantics, _systemd_sandbox
from ._host import Record
from ._postfix_mastercf import _ALNUM, MasterCfError, _all_in, active_entries

# master(8)'s semantics live in _postfix_semantics; the names are re-exported for this module's users.
from ._postfix_semantics import (
    ACCEPT,
    DEFAULT_KNOWN_TCP_PORTS,
    POOL,
    Daemon,
    Listener,
    check_entry,
    daemon_for,
    default_port_resolver,
    default_resolver,
    flag_of,
    inet_listener,
    instance_short_name,
    local_listener,
    master_argv,
    maxproc_of,
    raw_args,
    running_entries,
    wakeup_of,
)

_atoi = _postfix_semantics.atoi
_check_conflicts = _postfix_semantics.check_conflicts
_error = _postfix_semantics.entry_error
_master_head = _postfix_semantics.master_head
_split_host_port = _postfix_semantics.split_host_port

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:  # annotations only: the systemd generator imports this module at every boot
    from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

    from ._postfix_mastercf import Entry, EntryLike, MasterCf

    Resolver = Callable[[str], list[str]]
    PortResolver = Callable[[str], int]

# Types a per-connection (Accept=yes) unit can serve; the rest always use the bridge.
ACCEPT_TYPES = ("inet", "unix")
TYPE_SLUG = {"inet": "inet", "unix": "unix", "unix-dgram": "dgram", "fifo": "fifo", "pass": "pass"}
# Accept=yes with maxproc 0 ("no limit"): a bound so a flood cannot fork without end.
UNLIMITED_CONNECTIONS = 1024
# A pool worker's successor is a unit start (~90 ms of CPU) where master forks (~1 ms): pool
# workers serve max_use x this many clients, unless their entry sets -o max_use itself.
DEFAULT_MAX_USE_FACTOR = 10


class Instance(Record):
    """What the mapping needs to know about one Postfix instance (main.cf facts + install paths)."""

    _fields = (
        "name", "config_directory", "queue_directory", "data_directory", "daemon_directory", "command_directory",
        "mail_owner", "mail_owner_group", "setgid_group", "default_process_limit", "inet_interfaces",
        "inet_protocols", "master_service_disable", "compatibility_level", "known_tcp_ports", "virtual_mailbox_base",
        "maillog_file", "max_use", "max_use_factor", "service_throttle_time", "default_config_directory", "chroot", "supplementary_groups", "root_daemons",
        "master_units", "runtime_directory", "libexec_directory", "python", "source",
        # lookup tables of daemons without IP (_systemd_sandbox.TABLE_PARAMS)
        "virtual_mailbox_maps", "virtual_uid_maps", "virtual_gid_maps", "address_verify_map",
    )

    name: str = "-"  # multi_instance_name; '-' (or '') is the primary instance
    config_directory: str = "/etc/postfix"
    queue_directory: str = "/var/spool/postfix"
    data_directory: str = "/var/lib/postfix"
    daemon_directory: str = "/usr/lib/postfix/sbin"
    command_directory: str = "/usr/sbin"
    mail_owner: str = "postfix"
    mail_owner_group: str = ""  # the owner's primary group; defaults to mail_owner
    setgid_group: str = "postdrop"
    default_process_limit: int = 100
    inet_interfaces: str = "all"
    inet_protocols: str = "all"
    master_service_disable: str = ""
    compatibility_level: str = "3.6"
    known_tcp_ports: str = DEFAULT_KNOWN_TCP_PORTS
    virtual_mailbox_base: str = ""
    maillog_file: str = ""
    max_use: str = "100"
    max_use_factor: str = str(DEFAULT_MAX_USE_FACTOR)
    service_throttle_time: str = "60s"  # master(8): how long a crashing service is throttled
    default_config_directory: str = "/etc/postfix"  # compiled-in; MAIL_CONFIG only when different
    chroot: str = "sandbox"  # 'sandbox': chroot=y as systemd sandboxing; 'postfix': keep -c
    # Daemons started as mail_owner read their pre-jail files (smtpd: TLS keys) as that user:
    # the on-host code adds the groups that grant read access, or lists the daemon in
    # root_daemons when no group does (it then starts as root and drops privileges itself).
    supplementary_groups: tuple[str, ...] = ()
    root_daemons: tuple[str, ...] = ()
    master_units: tuple[str, ...] = ()  # units that run master for this instance (Conflicts=)
    runtime_directory: str = "/run/mailfleet-postfix"
    libexec_directory: str = "/usr/libexec/mailfleet-postfix"
    python: str = "/usr/bin/python3"
    source: str = ""  # master.cf path, for comments and messages
    virtual_mailbox_maps: str = ""
    virtual_uid_maps: str = ""
    virtual_gid_maps: str = ""
    address_verify_map: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **extra: Any) -> Instance:
        """Build from postconf output (strings) plus explicit install facts."""
        known = set(cls._fields)
        values: dict[str, Any] = {}
        for key, value in params.items():
            if key == "multi_instance_name":
                values["name"] = str(value).strip() or "-"
            elif key in known and value is not None:
                values[key] = str(value).strip()
        if "default_process_limit" in values:
            values["default_process_limit"] = _atoi(values["default_process_limit"], 100)
        values.update({k: v for k, v in extra.items() if v is not None})
        for key in ("supplementary_groups", "master_units", "root_daemons"):
            if isinstance(values.get(key), (list, str)):
                items = values[key].split() if isinstance(values[key], str) else values[key]
                values[key] = tuple(items)
        return cls(**values)

    @property
    def short_name(self) -> str:
        """Instance name in paths: 'default' for the primary, 'out' for postfix-out."""
        return instance_short_name(self.name, source=self.source or "main.cf")

    @property
    def prefix(self) -> str:
        return "postfix-" + escape(self.short_name)

    @property
    def group(self) -> str:
        return self.mail_owner_group or self.mail_owner

    @property
    def run_dir(self) -> str:
        return posixpath.join(self.runtime_directory, self.short_name)

    @property
    def holder_socket(self) -> str:
        return posixpath.join(self.run_dir, "holder.sock")

    @property
    def flow_fifo(self) -> str:
        return posixpath.join(self.run_dir, "flow")

    @property
    def stamp_dir(self) -> str:
        return posixpath.join(self.run_dir, "used")

    @property
    def throttle_dir(self) -> str:
        return posixpath.join(self.run_dir, "throttle")

    @property
    def crash_unit(self) -> str:
        """Template that is failed while the unit named by its instance (%N) waits out a crash throttle."""
        return self.prefix + "-crash@.service"

    @property
    def bridge(self) -> str:
        return posixpath.join(self.libexec_directory, "bridge")

    @property
    def target(self) -> str:
        return self.prefix + ".target"

    @property
    def slice(self) -> str:
        return self.prefix + ".slice"

    @property
    def holder(self) -> str:
        return self.prefix + "-holder"

    @property
    def mail_config(self) -> Optional[str]:
        if posixpath.normpath(self.config_directory) == posixpath.normpath(self.default_config_directory):
            return None
        return self.config_directory

    @property
    def debian_name(self) -> str:
        return "-" if self.name in ("", "-") else self.name


class ServicePlan(Record):
    """How one master.cf entry is run."""

    _fields = ("service", "type", "line", "command", "mode", "base", "units", "argv", "master_argv", "run_as")
    service: str
    type: str
    line: int
    command: str
    mode: str
    base: str  # unit name stem
    units: list[str]
    argv: list[str]  # what the daemon gets (argv[0] first)
    master_argv: list[str]  # what master(8) would have given it
    run_as: str  # 'mail_owner' or 'root'


class UnitSet(Record):
    """Unit file name -> content, plus the .wants links a generator must create."""

    _fields = ("instance", "units", "links", "services", "warnings")
    instance: Instance
    units: dict[str, str]
    links: dict[str, str]  # link path (relative) -> unit name
    services: list[ServicePlan]
    warnings: list[str]

    def __init__(self, instance: Instance) -> None:
        super().__init__(instance=instance, units={}, links={}, services=[], warnings=[])


# --------------------------------------------------------------------------- names and escaping


def escape(text: str) -> str:
    """systemd-escape(1) without --path: '/' -> '-', anything odd (and '-') -> \\xNN.

    ':' is escaped too although unit names may contain it: systemd-analyze verify
    (252) refuses such file names ("Couldn't process aliases").
    """
    if _all_in(text, _ALNUM + "_.") and not text.startswith("."):
        return text  # nothing to escape: the usual case, and called for every unit name
    out = []
    for pos, char in enumerate(text):
        if char == "/":
            out.append("-")
        elif (char.isascii() and char.isalnum()) or char == "_" or (char == "." and pos > 0):
            out.append(char)
        else:
            # surrogateescape: a byte that is not UTF-8 (read from master.cf) is escaped as that byte.
            out.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogateescape"))
    return "".join(out)


def unit_base(instance: Instance, service: str, kind: str) -> str:
    return f"{instance.prefix}-{escape(service)}-{TYPE_SLUG[kind]}"


_EXEC_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "'": "\\'", "%": "%%", "$": "$$", "\t": "\\t",
                               # other control characters as \xNN
                               **{chr(c): f"\\x{c:02x}" for c in (*range(0x09), *range(0x0a, 0x20), 0x7f)},
                               # bytes that are not UTF-8 (surrogateescape) as \xNN: systemd unescapes
                               # them to that byte (systemd.syntax(7), "Quoting"), the unit file stays UTF-8
                               **{chr(0xdc00 + b): f"\\x{b:02x}" for b in range(0x80, 0x100)}})


# Characters exec_quote() leaves as they are (most words): str.translate with a dict costs more.
_EXEC_PLAIN = _ALNUM + "/-_.,:=@+"


def exec_quote(arg: str) -> str:
    """One argv element for ExecStart=: no expansion of $VAR, %spec, quotes or escapes."""
    if _all_in(arg, _EXEC_PLAIN):
        return arg
    text = arg.translate(_EXEC_ESCAPES)
    if text == ";":
        return "\\;"
    if text == "" or " " in text:
        return f'"{text}"'
    return text


def _env_quote(assignment: str) -> str:
    text = utf8_only(assignment, "Environment")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def _unit_quote(value: str) -> str:
    """A unit name or path in a dependency list: only specifiers need care."""
    return utf8_only(value, "a unit name or path").replace("%", "%%")


def is_utf8(text: str) -> bool:
    """False when text carries bytes that are not UTF-8 (read with surrogateescape)."""
    # isascii() first: called for every value of every unit, and a per-character loop costs the
    # generator milliseconds at boot.
    return text.isascii() or not any("\udc80" <= char <= "\udcff" for char in text)


def printable(text: str) -> str:
    """text for messages and comments: a byte that is not UTF-8 as \\xNN (never dropped or replaced)."""
    if is_utf8(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def utf8_only(value: str, what: str) -> str:
    """value unchanged; MasterCfError for bytes that a setting cannot carry.

    systemd reads unit files as UTF-8 and C-unescapes only some settings (ExecStart= does, see
    exec_quote); paths such as ListenStream= and Environment= values must be UTF-8 (a raw byte
    gives "String is not UTF-8 clean, ignoring assignment"). Refused, never dropped or replaced.
    """
    if is_utf8(value):
        return value
    raise MasterCfError(f"{what} '{printable(value)}' is not UTF-8: systemd cannot carry these bytes in a unit file",
                        value=value)


def unit_value(key: str, value: str) -> str:
    """One 'key=value' of a unit: free text (Description=) shows bytes as \\xNN, other settings refuse them.

    Description= expands %-specifiers: a '%' from master.cf ([fe80::1%eth0]:25) is doubled.
    """
    # Printable ASCII (no line break, NUL or byte that is not UTF-8) without a trailing backslash:
    # nothing below applies. Most values, and this runs for every line of every unit.
    if value.isascii() and value.isprintable() and value[-1:] != "\\":
        return value.replace("%", "%%") if key == "Description" else value
    if key == "Description":
        value = printable(value).replace("%", "%%")
    elif not is_utf8(value):
        return utf8_only(value, f"{key}=")
    # A line break (or NUL) would start a setting of its own; an odd trailing backslash joins the next line.
    if "\n" in value or "\r" in value or "\0" in value or (len(value) - len(value.rstrip("\\"))) % 2:
        raise MasterCfError(f"{key}= '{ascii(printable(value))[1:-1]}' cannot be written on one unit file line",
                            field_name=key, value=value)
    return value


# --------------------------------------------------------------------------- rendering


def render_unit(sections: Sequence[tuple[str, Sequence[tuple[str, str]]]], *,
                header: Union[str, Sequence[str]] = "") -> str:
    """One unit file, for both modes. A unit is UTF-8: bytes that are not (Latin-1 in master.cf)
    are \\xNN in comments and refused in settings (unit_value)."""
    lines = header.splitlines() if isinstance(header, str) else header
    out = [f"# {printable(line)}".rstrip() for line in lines]
    for name, items in sections:
        if out:
            out.append("")
        out.append(f"[{name}]")
        out.extend(f"{key}={unit_value(key, value)}" for key, value in items)
    return "\n".join(out) + "\n"


def _header(instance: Instance, entry: Optional[Entry] = None) -> str:
    source = instance.source or "master.cf"
    if entry is None:
        return f"Generated by mailfleet.postfix from {source}; edit master.cf, not this file."
    return f"Generated by mailfleet.postfix from {source} line {entry.first_line}; edit master.cf, not this file."


def _env(instance: Instance) -> list[tuple[str, str]]:
    # master.c: clean_env(import_environment) sets LANG=C; MAIL_CONFIG selects the instance.
    out = [("Environment", "LANG=C")]
    if instance.mail_config:
        out.append(("Environment", _env_quote(f"MAIL_CONFIG={instance.mail_config}")))
    return out


# --------------------------------------------------------------------------- crash back-off
#
# master(8) throttles a service whose process ends abnormally (master_spawn.c master_throttle(): no new
# process for service_throttle_time). systemd's start limits count every start, and pool units start
# often under load by design; a service's start limit would also fail and close its socket. So they
# stay off (StartLimitIntervalSec=0) and only restarts after an abnormal end (Restart=, NRestarts)
# count. ExecStartPre notes them (not ExecStopPost: on systemd 247 a Type=exec unit whose process dies
# at once and that has ExecStopPost= keeps PID 1 in a busy loop); more than CRASH_BURST within
# CRASH_INTERVAL throttle the unit: <prefix>-crash@<unit>.service is started and fails (what monitoring
# sees), and ExecStartPre waits service_throttle_time (clients wait in the listener's queue, as with
# master's throttle); then both are cleared and the unit starts.
CRASH_BURST = 5
CRASH_INTERVAL = 60
RELOAD_GRACE = 15
# Stand for %N / %n (the unit's name without / with its suffix) in the scripts below.
_NAME, _FULL_NAME = "\0N\0", "\0n\0"
# Inside systemd's double quotes a single quote is literal: the shell's quoting stays readable.
_SH_ESCAPES = {k: v for k, v in _EXEC_ESCAPES.items() if k != ord("'")}


def _sh(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _sh_exec(script: str) -> str:
    """ExecStartPre= running script with /bin/sh as root ('+': outside the sandbox)."""
    parts = ("%n".join(p.translate(_SH_ESCAPES) for p in part.split(_FULL_NAME)) for part in script.split(_NAME))
    return '+/bin/sh -c "' + "%N".join(parts) + '"'


def throttle_seconds(instance: Instance) -> int:
    return _postfix_semantics.time_seconds(instance.service_throttle_time, 60)


_CRASH_GATES: dict[tuple[int, str, str], list[tuple[str, str]]] = {}


def _crash_gate(instance: Instance) -> list[tuple[str, str]]:
    """The same lines for every unit of an instance (%N/%n name the unit): made once per instance."""
    key = (throttle_seconds(instance), instance.crash_unit, instance.throttle_dir)
    if key not in _CRASH_GATES:
        _CRASH_GATES[key] = _make_crash_gate(*key)
    return list(_CRASH_GATES[key])


def _make_crash_gate(seconds: int, crash_unit: str, throttle_dir: str) -> list[tuple[str, str]]:
    crash = _sh(crash_unit.replace("@", "@" + _NAME, 1))
    where = _sh(throttle_dir)
    # systemd does not tell ExecStartPre how the last run ended (ExecMainCode is reset by then): restarts
    # within RELOAD_GRACE of a holder reload (qmgr's Restart=always after postfix reload) are no crash.
    gate = (f"f={where}/{_sh(_NAME)}; r=$(systemctl show -p NRestarts --value -- {_sh(_FULL_NAME)} 2>/dev/null); "
            "case $r in ''|*[!0-9]*) r=0;; esac; last=0; [ -e \"$f.restarts\" ] && read -r last < \"$f.restarts\"; "
            "case $last in ''|*[!0-9]*) last=0;; esac; "
            f"rl=0; [ -e {where}/.reload ] && read -r rl < {where}/.reload; case $rl in ''|*[!0-9]*) rl=0;; esac; "
            f"if [ $r -gt $last ]; then mkdir -p -m 0755 -- {where} && echo $r > \"$f.restarts\" && "
            f"{{ d=$(($(date +%s) - rl)); [ $d -ge 0 ] && [ $d -lt {RELOAD_GRACE} ] || date +%s >> \"$f.crashes\"; }}; "
            "elif [ $r -lt $last ]; then echo $r > \"$f.restarts\"; fi; "
            "[ -e \"$f.crashes\" ] || exit 0; n=$(date +%s); c=0; keep=; "
            "while read -r t; do case $t in ''|*[!0-9]*) continue;; esac; "
            f"[ $((n - t)) -lt {CRASH_INTERVAL} ] && c=$((c + 1)) && keep=\"$keep $t\"; done < \"$f.crashes\"; "
            f"if [ $c -le {CRASH_BURST} ]; then "
            "if [ -n \"$keep\" ]; then printf '%s\\n' $keep > \"$f.crashes\"; else rm -f -- \"$f.crashes\"; fi; exit 0; fi; "
            f"echo \"warning: $c restarts after abnormal exits within {CRASH_INTERVAL}s -- throttling for {seconds}s "
            "(service_throttle_time)\"; "
            f"systemctl start --no-block -q -- {crash}; sleep {seconds}; "
            f"rm -f -- \"$f.crashes\"; systemctl reset-failed -q -- {crash} 2>/dev/null; exit 0")
    return [("ExecStartPre", _sh_exec(gate)), ("TimeoutStartSec", f"{seconds + 90}s")]  # the wait is part of the start


# --------------------------------------------------------------------------- the mapping


def as_entries(items: Union[str, MasterCf, Iterable[EntryLike]], *, path: str = "master.cf") -> list[Entry]:
    """Active entries from master.cf text, a parsed document, or master_cf_parse dicts."""
    return active_entries(items, path=path)


def build_units(
    items: Union[str, MasterCf, Iterable[EntryLike]],
    instance: Optional[Instance] = None,
    *,
    resolver: Resolver = default_resolver,
    port_resolver: PortResolver = default_port_resolver,
) -> UnitSet:
    """The whole unit set for one instance; raises MasterCfError (and builds nothing) on bad input."""
    instance = instance or Instance()
    entries, warnings = running_entries(items, instance, path=instance.source or "master.cf")
    result = UnitSet(instance=instance)
    result.warnings += warnings
    prepared: list[tuple[Entry, Daemon, Listener]] = []
    for entry in entries:
        daemon = daemon_for(entry)
        check_entry(entry, daemon, instance)
        if entry.type == "inet":
            listener = inet_listener(entry, instance, resolver, port_resolver)
        else:
            if "/" in entry.service:
                # master(8) would create it as mail_owner; systemd binds and opens as root, and a path
                # through a directory mail_owner controls could be redirected by a symlink.
                raise _error(entry, "a service name with '/' puts the endpoint in a subdirectory of "
                             "private/ or public/, which systemd (root) cannot use safely; rename the service",
                             "service")
            listener = local_listener(entry, instance)
        prepared.append((entry, daemon, listener))
    _check_conflicts([(e, listener) for e, _unused, listener in prepared])
    bases: dict[str, Entry] = {}
    for entry, _unused, _listener in prepared:
        other = bases.setdefault(unit_base(instance, entry.service, entry.type), entry)
        if other is not entry:  # private/x and public/x: two services for master(8), one unit name here
            raise _error(entry, f"its units would have the names of the entry at line {other.first_line} "
                         f"('{other.service} {other.type}', private and public endpoints of one name); "
                         "rename one of them", "service")
    # The holder starts with the target: it takes master's locks, so postfix status answers at once.
    wants: list[str] = [instance.holder + ".socket", instance.holder + ".service"]
    for entry, daemon, listener in prepared:
        try:
            wants += _entry_units(result, _plan(instance, entry, daemon, listener))
        except MasterCfError as exc:  # a value systemd cannot carry (utf8_only): name the entry's line
            if exc.line is not None:
                raise
            raise _error(entry, exc.reason, exc.field_name) from exc
    _instance_units(result, wants)
    return result


class _Plan(Record):
    """Everything decided about one entry before rendering."""

    _fields = ("entry", "daemon", "listener", "base", "mode", "maxproc", "owner", "keep_chroot", "head", "args",
               "stamp")
    entry: Entry
    daemon: Daemon
    listener: Listener
    base: str
    mode: str
    maxproc: int
    owner: bool
    keep_chroot: bool
    head: list[str]  # argv[0] and our options
    args: list[str]  # master.cf arguments
    stamp: str  # '?' wakeup: file that says the service was used

    @property
    def template(self) -> bool:
        return self.mode == ACCEPT or self.maxproc != 1

    @property
    def service_unit(self) -> str:
        return f"{self.base}@.service" if self.template else f"{self.base}.service"

    @property
    def first(self) -> str:
        """The unit the socket activates (pools: worker 1)."""
        return f"{self.base}@1.service" if self.template and self.mode == POOL else self.service_unit


def _plan(instance: Instance, entry: Entry, daemon: Daemon, listener: Listener) -> _Plan:
    kind = entry.type
    rule = _systemd_sandbox.chroot_rule(instance.chroot, flag_of(entry, "chroot", instance))
    keep_chroot = rule.keep_c
    owner = (rule.owner_ok and daemon.owner and flag_of(entry, "unpriv", instance)
             and posixpath.basename(entry.parsed.fields["command"]) not in instance.root_daemons)
    mode = daemon.mode if kind in ACCEPT_TYPES else POOL
    head = _master_head(entry, instance, listen_count=len(listener.addresses), local_only=listener.local_only)
    base = unit_base(instance, entry.service, kind)
    _unused, conditional = wakeup_of(entry)
    return _Plan(
        entry=entry, daemon=daemon, listener=listener, base=base, mode=mode,
        maxproc=maxproc_of(entry, instance), owner=owner, keep_chroot=keep_chroot,
        head=_our_head(head, owner=owner, keep_chroot=keep_chroot, accept=mode == ACCEPT),
        args=raw_args(entry), stamp=posixpath.join(instance.stamp_dir, base) if conditional else "",
    )


def _entry_units(result: UnitSet, plan: _Plan) -> list[str]:
    instance, entry = result.instance, plan.entry
    result.units[f"{plan.base}.socket"] = _socket_unit(instance, plan)
    result.units[plan.service_unit] = _service_unit(instance, plan)
    wants = [f"{plan.base}.socket"]
    if plan.daemon.persistent:
        wants.append(plan.first)
    units = [f"{plan.base}.socket", plan.service_unit]
    seconds, _unused = wakeup_of(entry)
    if seconds > 0:
        timer = _wakeup_units(result, plan, seconds)
        if timer:
            wants.append(timer)
            units += [timer, timer[: -len(".timer")] + ".service"]
    faithful = master_argv(entry, instance, listen_count=len(plan.listener.addresses),
                           local_only=plan.listener.local_only)
    result.services.append(ServicePlan(
        service=entry.service, type=entry.type, line=entry.first_line, command=entry.parsed.fields["command"],
        mode=plan.mode, base=plan.base, units=units, argv=plan.head + plan.args, master_argv=faithful,
        run_as="mail_owner" if plan.owner else "root",
    ))
    return wants


def _our_head(head: list[str], *, owner: bool, keep_chroot: bool, accept: bool) -> list[str]:
    """master's options minus what systemd does instead (see the module docstring)."""
    out = [head[0]] + (["-S"] if accept else [])
    pos = 1
    while pos < len(head):
        arg = head[pos]
        if arg in ("-n", "-t", "-o"):
            out += head[pos:pos + 2]
            pos += 1
        elif arg == "-s":
            if not accept:
                out += head[pos:pos + 2]
            pos += 1
        elif not ((arg == "-u" and owner) or (arg == "-c" and not keep_chroot)):
            out.append(arg)
        pos += 1
    return out


def _socket_unit(instance: Instance, plan: _Plan) -> str:
    entry, listener = plan.entry, plan.listener
    unit = [("Description", f"Postfix {instance.short_name}: {entry.service}/{entry.type} listener"),
            ("Documentation", "man:master(5)"),
            ("PartOf", instance.target),
            ("StartLimitIntervalSec", "0")]
    sock: list[tuple[str, str]] = [(listener.kind, _unit_quote(a)) for a in listener.addresses]
    if entry.type == "inet":
        if any(a.startswith("[") for a in listener.addresses):
            sock.append(("BindIPv6Only", "ipv6-only"))
        if not any(a.startswith(("0.0.0.0:", "[::]:")) for a in listener.addresses):
            sock.append(("FreeBind", "yes"))  # master binds at start; systemd may be earlier than the address
    else:
        group = instance.setgid_group if listener.public else instance.group
        mode = "0622" if entry.type == "fifo" else "0666"
        # No SocketUser=/SocketGroup=: systemd chown(2)s the path, following whatever mail_owner put at
        # the name meanwhile. The bridge gives the endpoint away by descriptor instead (ExecStartPost).
        sock.append(("SocketMode", mode))
        # master(8) replaces whatever is at the endpoint's name (fifo_listen, unix_listen: unlink, then
        # create); systemd fails on a stale FIFO, on a socket where a FIFO goes and on any FIFO in a
        # set-gid public/. The bridge makes room first (see _masterless_bridge.cmd_endpoint: no symlink followed,
        # nothing but that name removed). No RemoveOnStop=: master never removes an endpoint, and a unit
        # no longer generated (pickup-unix after pickup became fifo) would remove the new one at its stop.
        prepare = [instance.python, "-I", "-S", instance.bridge, "endpoint"]
        if entry.type == "fifo":
            prepare += ["--fifo-mode", mode]
        sock.append(("ExecStartPre", " ".join(exec_quote(w) for w in [*prepare, "--", listener.addresses[0]])))
        give = [instance.python, "-I", "-S", instance.bridge, "endpoint", "--owner", instance.mail_owner,
                "--group", group, "--", listener.addresses[0]]
        sock.append(("ExecStartPost", " ".join(exec_quote(w) for w in give)))
    if listener.kind == "ListenStream":
        sock.append(("Backlog", str(max(plan.maxproc, instance.default_process_limit))))
    if plan.mode == ACCEPT:
        sock += [("Accept", "yes"), ("MaxConnections", str(plan.maxproc or UNLIMITED_CONNECTIONS))]
    else:
        sock.append(("Service", _unit_quote(plan.first)))
    # systemd's default (200 activations in 2 s) disables a busy socket for good.
    sock.append(("TriggerLimitIntervalSec", "0"))
    return render_unit([("Unit", unit), ("Socket", sock)], header=_header(instance, entry))


def _service_unit(instance: Instance, plan: _Plan) -> str:
    entry, daemon = plan.entry, plan.daemon
    command = entry.parsed.fields["command"]
    name = posixpath.basename(command)
    path = posixpath.join(instance.daemon_directory, command)
    unit = [("Description", f"Postfix {instance.short_name}: {entry.service}/{entry.type} ({name})"),
            ("Documentation", f"man:{name}(8)"),
            ("PartOf", instance.target),
            ("StartLimitIntervalSec", "0"),  # Postfix daemons exit by design (max_use, max_idle)
            ("Requires", f"{plan.base}.socket"),
            ("After", f"{plan.base}.socket")]
    if plan.template:
        unit.append(("CollectMode", "inactive-or-failed"))  # failed instances must not pile up
    svc: list[tuple[str, str]] = [("Type", "exec"), ("Slice", instance.slice)]
    head = plan.head
    # Single-server pools only: multi-servers (proxymap, trivial-rewrite) hold long connections and
    # are seldom replaced; a larger max_use would only keep them longer.
    if plan.mode != ACCEPT and plan.template and daemon.skeleton == "single" and "max_use" not in entry.options:
        head = [*head, "-o", f"max_use={pool_max_use(entry, instance)}"]
    argv = " ".join(exec_quote(w) for w in head + plan.args)
    if plan.mode == ACCEPT:
        svc += [("ExecStart", f"@{exec_quote(path)} {argv}"),
                ("StandardInput", "socket"), ("StandardOutput", "socket"), ("StandardError", "journal")]
        if plan.stamp:
            svc.append(("ExecStartPre", f"+/usr/bin/touch {exec_quote(plan.stamp)}"))
    else:
        unit += [("Requires", instance.holder + ".socket"), ("After", instance.holder + ".socket")]
        bridge = [instance.python, "-I", "-S", instance.bridge, "run", "--holder", instance.holder_socket,
                  "--flow", instance.flow_fifo, "--maxproc", str(plan.maxproc)]
        if plan.template and daemon.skeleton == "single":
            # One status TAKEN per client: the holder can tell when max_use ends a worker.
            bridge += ["--max-use", str(pool_max_use(entry, instance))]
            if not daemon.retire:
                # A burst is served by daemons this unit's bridge forks (as master forks), not by a unit each.
                bridge += ["--forks", str(FORKS_PER_UNIT)]
        if plan.stamp:
            bridge += ["--stamp", plan.stamp]
        lock = _lock_name(plan)
        if lock:
            bridge += ["--lock", lock]
        words = " ".join(exec_quote(w) for w in bridge)
        svc.append(("ExecStart", f"{words} --unit %n -- {exec_quote(path)} {argv}"))
        if daemon.retire:
            retire = [instance.python, "-I", "-S", instance.bridge, "retire", "--holder", instance.holder_socket]
            svc.append(("ExecStop", " ".join(exec_quote(w) for w in retire) + " --pid $MAINPID"))
        if plan.template:
            # Sockets= (unlike Wants=, Service=, Unit=) C-unescapes its value: double the backslashes.
            svc.append(("Sockets", f"{plan.base}.socket".replace("\\", "\\\\")))
        # Idle and max_use exits are clean (0): the socket starts the next worker.
        svc += [("Restart", "always" if daemon.persistent else "on-failure"), ("RestartSec", "1s")]
        svc += _crash_gate(instance)
    # cwd: non-solitary daemons open pid/<type>.<name> relative to it before chdir().
    svc += [("WorkingDirectory", _systemd_sandbox.unit_path(instance.queue_directory, "queue_directory")),
            ("UMask", "0077"), ("SuccessExitStatus", "15")]
    svc += _env(instance)
    # The groups grant smtpd's pre-jail files (TLS keys); nobody else needs them.
    smtpd = plan.owner and posixpath.basename(entry.parsed.fields["command"]) == "smtpd"
    svc += _systemd_sandbox.directives(daemon.kind, owner=plan.owner, keep_chroot=plan.keep_chroot,
                                       paths=_paths(instance, entry), mail_owner=instance.mail_owner,
                                       mail_group=instance.group,
                                       supplementary_groups=instance.supplementary_groups if smtpd else (),
                                       network=_table_network(entry, instance))
    return render_unit([("Unit", unit), ("Service", svc)], header=_header(instance, entry))


def _paths(instance: Instance, entry: Entry) -> _systemd_sandbox.Paths:
    maillog = _effective(entry, instance, "maillog_file")
    log_dir = posixpath.dirname(maillog) if maillog.startswith("/") and not maillog.startswith("/dev/") else ""
    return _systemd_sandbox.Paths(
        queue_directory=instance.queue_directory,
        data_directory=instance.data_directory,
        maillog=_systemd_sandbox.writable_target(log_dir),
        mailbox_base=_systemd_sandbox.writable_target(_effective(entry, instance, "virtual_mailbox_base")),
    )


def _table_network(entry: Entry, instance: Instance) -> Optional[list[str]]:
    """The hosts this service's own lookup tables talk to (main.cf by _systemd_sandbox.TABLE_PARAMS, and its -o)."""
    params = _systemd_sandbox.TABLE_PARAMS.get(posixpath.basename(entry.parsed.fields["command"]), ())
    values = [_effective(entry, instance, p) for p in params if p not in entry.options]
    return _systemd_sandbox.table_network(values + list(entry.options.values()))


def _lock_name(plan: _Plan) -> str:
    """pid/<type>.<service>: the select-collision lock a non-solitary worker opens as itself."""
    argv = plan.head
    if not plan.owner or plan.daemon.skeleton == "multi" or "-l" in argv or "-S" in argv:
        return ""
    name, kind = posixpath.basename(argv[0]), ""
    for pos, arg in enumerate(argv[:-1]):
        if arg == "-n":
            name = argv[pos + 1]
        elif arg == "-t":
            kind = argv[pos + 1]
    return f"pid/{kind}.{name}"


# Daemons one pool unit may run when clients wait (the holder grants them one per waiting client, within
# maxproc): one unit start, then forks, where a unit per daemon cost ~100 ms of CPU each.
FORKS_PER_UNIT = 32


def pool_max_use(entry: Entry, instance: Instance) -> int:
    """max_use of a pool worker: the entry's own -o max_use as is, else main.cf's x max_use_factor."""
    if "max_use" in entry.options:
        return _atoi(entry.options["max_use"], 100)
    return _atoi(instance.max_use, 100) * max(1, _atoi(instance.max_use_factor, DEFAULT_MAX_USE_FACTOR))


def _effective(entry: Entry, instance: Instance, param: str) -> str:
    """A parameter as this service sees it: its -o override, else main.cf."""
    options = entry.options
    if param in options:
        return options[param]
    return str(getattr(instance, param, "") or "")


def _wakeup_units(result: UnitSet, plan: _Plan, seconds: int) -> str:
    instance, entry = result.instance, plan.entry
    kind, service = entry.type, entry.service
    if kind == "unix-dgram":
        result.warnings.append(f"{entry.path} line {entry.first_line}: wakeup on a unix-dgram service is not "
                               "supported by Postfix either (master logs EOPNOTSUPP); no timer")
        return ""
    if kind == "pass":
        raise _error(entry, "a wakeup for a pass service cannot be expressed: a pass service accepts only "
                     "handed-over client connections", "wakeup")
    if kind == "inet":
        command = [instance.python, "-I", "-S", instance.bridge, "kick", "--inet", plan.listener.addresses[0]]
    else:
        command = [posixpath.join(instance.command_directory, "postkick"),
                   "public" if entry.parsed.fields["private"] == "n" else "private", service, "W"]
    unit = [("Description", f"Postfix {instance.short_name}: wake up {service}/{kind} every {seconds}s"),
            ("Documentation", "man:master(5) man:postkick(1)"),
            ("PartOf", instance.target),
            ("After", f"{plan.base}.socket")]
    svc: list[tuple[str, str]] = [("Type", "oneshot"), ("Slice", instance.slice)]
    if plan.stamp:
        # '?': master arms this timer only after the service's first process was spawned.
        svc.append(("ExecCondition", f"/usr/bin/test -e {exec_quote(plan.stamp)}"))
    svc.append(("ExecStart", " ".join(exec_quote(w) for w in command)))
    svc += _env(instance)
    svc += _systemd_sandbox.wakeup_directives(mail_owner=instance.mail_owner, mail_group=instance.group)
    # master wakes the service at start and then every <wakeup> seconds.
    timer = [("OnActiveSec", "1s"), ("OnUnitActiveSec", f"{seconds}s"), ("AccuracySec", "1s"),
             ("Unit", f"{plan.base}-wakeup.service")]
    header = _header(instance, entry)
    result.units[f"{plan.base}-wakeup.service"] = render_unit([("Unit", unit), ("Service", svc)], header=header)
    result.units[f"{plan.base}-wakeup.timer"] = render_unit([("Unit", unit[:3]), ("Timer", timer)], header=header)
    return f"{plan.base}-wakeup.timer"


def _instance_units(result: UnitSet, wants: list[str]) -> None:
    instance = result.instance
    name = instance.short_name
    header = _header(instance)
    result.units[instance.slice] = render_unit(
        [("Unit", [("Description", f"Postfix instance {name}"), ("Documentation", "man:postfix(1)")]),
         ("Slice", [])], header=header)
    result.units[instance.holder + ".socket"] = render_unit(
        [("Unit", [("Description", f"Postfix {name}: status holder socket"), ("PartOf", instance.target)]),
         ("Socket", [("ListenSequentialPacket", instance.holder_socket), ("SocketUser", "root"),
                     ("SocketGroup", instance.group), ("SocketMode", "0660"), ("DirectoryMode", "0755"),
                     ("RemoveOnStop", "yes"), ("TriggerLimitIntervalSec", "0")])], header=header)
    holder = [instance.python, "-I", "-S", instance.bridge, "holder", "--flow", instance.flow_fifo,
              "--stamps", instance.stamp_dir, "--queue-directory", instance.queue_directory,
              "--data-directory", instance.data_directory, "--owner", instance.mail_owner,
              "--group", instance.group, "--target", instance.target]
    service = [("Type", "exec"), ("Slice", instance.slice),
               ("ExecStart", " ".join(exec_quote(w) for w in holder)),
               # postfix reload sends SIGHUP too (pid/master.pid): regenerate, then retire daemons.
               ("ExecReload", "/bin/kill -HUP $MAINPID"),
               # SIGTERM means "postfix stop" (stop the instance); systemd's own stop is SIGUSR1.
               ("KillSignal", "SIGUSR1"),
               ("Restart", "always"), ("RestartSec", "1s"), ("UMask", "0022")]
    # A new holder is a new master: the daemons' crash counts and throttles start afresh (its own stay).
    clear = (f"for f in {_sh(instance.throttle_dir)}/*.crashes; do [ -f \"$f\" ] || continue; n=${{f##*/}}; "
             f"n=${{n%.crashes}}; [ \"$n\" = {_sh(instance.holder)} ] && continue; rm -f -- \"$f\"; "
             f"systemctl reset-failed -q -- \"{instance.crash_unit.replace('@.', '@$n.', 1)}\" 2>/dev/null; done; exit 0")
    gate, timeout = _crash_gate(instance)
    service += [gate, ("ExecStartPre", _sh_exec(clear)), timeout]
    service += _systemd_sandbox.holder_directives(runtime_directory=instance.run_dir, queue_directory=instance.queue_directory,
                                                  data_directory=instance.data_directory)
    result.units[instance.crash_unit] = render_unit(
        # Failed while the unit it is named after is throttled (see _crash_gate).
        [("Unit", [("Description", f"Postfix {name}: throttled after repeated abnormal exits (the unit in this name)"),
                   ("Documentation", "man:master(8)"), ("DefaultDependencies", "no"), ("StartLimitIntervalSec", "0")]),
         ("Service", [("Type", "oneshot"), ("Slice", instance.slice), ("ExecStart", "/bin/false"),
                      *_systemd_sandbox.wakeup_directives(mail_owner=instance.mail_owner, mail_group=instance.group)])],
        header=header)
    result.units[instance.holder + ".service"] = render_unit(
        [("Unit", [("Description", f"Postfix {name}: status holder (drains daemon status, grows pools)"),
                   ("PartOf", instance.target), ("StartLimitIntervalSec", "0"),
                   ("Requires", instance.holder + ".socket"), ("After", instance.holder + ".socket")]
          # It holds copies of the pools' listeners: stop it before they are closed and bound again.
          + [("After", _unit_quote(w)) for w in wants if w.endswith(".socket") and not w.startswith(instance.holder)]),
         ("Service", service)], header=header)
    unit = [("Description", f"Postfix mail system, instance {name} (master-less)"),
            ("Documentation", "man:postfix(1) man:master(5)"),
            ("Wants", "network-online.target"),
            ("After", "network-online.target nss-lookup.target")]
    unit += [("Wants", _unit_quote(w)) for w in wants]
    # Never two supervisors for one queue: starting the distribution's master unit stops this target.
    conflicts = instance.master_units or (f"postfix@{instance.debian_name}.service",)
    unit += [("Conflicts", _unit_quote(c)) for c in conflicts]
    result.units[instance.target] = render_unit(
        [("Unit", unit), ("Install", [("WantedBy", "multi-user.target")])], header=header)
    result.links[f"multi-user.target.wants/{instance.target}"] = instance.target
