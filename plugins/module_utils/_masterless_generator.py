# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""systemd generator for master-less Postfix instances, and the host-side helpers it shares with the module.

Private to the mailfleet.postfix collection; the API may change without notice.

Installed by the systemd_units module as a systemd generator. At boot and at every
``systemctl daemon-reload`` it reads, for each instance enabled in
/etc/mailfleet-postfix/instances/<name>.conf, the instance's master.cf and main.cf
facts (``postconf -x``) and writes the units of ``_masterless_units.build_units`` into the
generator output directory, plus a ``multi-user.target.wants`` link and, in the
early directory (which outranks /etc), a mask for the distribution's master unit
of that instance. Editing master.cf and running ``systemctl daemon-reload`` is
all a user needs.

A master.cf that cannot be mapped (or any other failure) is logged with its line
and reason, and the instance's last good unit set is written instead: the copy
this generator keeps in /run, else the one the module stored in /var/lib. A unit
set is built completely in memory before anything is written, so it is never
half-written. Either way a failing unit shows the reason in `systemctl --failed`;
without a last good set the instance's target requires it (failure_units).

master.cf, main.cf and postconf's output are read as Postfix reads them, as bytes:
UTF-8 with surrogateescape, so a Latin-1 comment or value is kept, never replaced.
"""

from __future__ import annotations

import os
import stat
import sys

from ._host import Spawned, parse_postconf, write_atomic

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:  # annotations only: the generator avoids import costs at boot
    from typing import Optional, Sequence

    from ._masterless_units import UnitSet
    from ._postfix_mastercf import Entry, MasterCf

CONF_DIR = "/etc/mailfleet-postfix/instances"
STATE_DIR = "/var/lib/mailfleet-postfix"
RUN_DIR = "/run/mailfleet-postfix"
POSTCONF = "/usr/sbin/postconf"
# Where the distribution's postfix@.service is looked up, an admin's full copy in /etc first.
UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
TAG = "mailfleet-postfix-generator"
# The library the generator and the bridge run from on a host (installed by systemd_units).
LIBRARY = ("_host", "_postfix_mastercf", "_postfix_semantics", "_masterless_units", "_systemd_sandbox", "_masterless_bridge", "_masterless_generator")
# main.cf parameters the mapping reads (postconf -x, so the values are expanded).
FACT_PARAMS = (
    "config_directory", "queue_directory", "data_directory", "daemon_directory", "command_directory",
    "mail_owner", "setgid_group", "default_process_limit", "inet_interfaces", "inet_protocols",
    "master_service_disable", "compatibility_level", "multi_instance_name", "known_tcp_ports",
    "virtual_mailbox_base", "maillog_file", "max_use", "service_throttle_time",
    # lookup tables of daemons without IP (_systemd_sandbox.TABLE_PARAMS): their servers decide IPAddressAllow=
    "virtual_mailbox_maps", "virtual_uid_maps", "virtual_gid_maps", "address_verify_map",
)
# Files smtpd reads before it could drop privileges; started as mail_owner it needs them readable.
SECRET_PARAMS = (
    "smtpd_tls_key_file", "smtpd_tls_cert_file", "smtpd_tls_dkey_file", "smtpd_tls_dcert_file",
    "smtpd_tls_eckey_file", "smtpd_tls_eccert_file", "smtpd_tls_chain_files",
)


SYSLOG = False  # set by main(): only a real generator run also logs to syslog


class GeneratorError(Exception):
    """A problem with one instance; the others are still generated."""


def log(message: str) -> None:
    """stderr (kmsg at boot) and, once journald runs, syslog: a container has no kmsg to read."""
    message = _printable(message)
    try:
        sys.stderr.write(f"{TAG}: {message}\n")
        sys.stderr.flush()
    except OSError:
        pass
    if SYSLOG and os.path.exists("/dev/log"):
        import socket

        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as conn:
                conn.sendto(f"<11>{TAG}: {message}".encode(), "/dev/log")  # user.err
        except OSError:
            pass


def _printable(text: str) -> str:
    """_masterless_units.printable without importing the mapping: a byte that is not UTF-8 as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# Postfix reads master.cf, main.cf and postconf's output as bytes: so does everything here. Text is
# UTF-8 with surrogateescape, so a byte that is not UTF-8 (a Latin-1 comment) is kept, never replaced.
BYTES_KEPT = "surrogateescape"


# --------------------------------------------------------------------------- configuration


def read_conf(path: str) -> dict[str, str]:
    """key=value lines; '#' comments."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8", errors=BYTES_KEPT) as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _unused, value = line.partition("=")
                out[key.strip()] = value.strip()
    if not out.get("config_directory", "").startswith("/"):
        raise GeneratorError(f"{path}: config_directory must be an absolute path")
    return out


def enabled_instances(conf_dir: str = CONF_DIR) -> list[tuple[str, dict[str, str]]]:
    return [(name, conf) for name, conf, _unused in _enabled(conf_dir)]


def _enabled(conf_dir: str, postconf: str = "") -> list[tuple[str, dict[str, str], Optional[Postconf]]]:
    """(short name, conf, its postconf started when postconf names the binary), in name order.

    Every postconf starts before the name checks import the library: it runs (~6 ms) meanwhile.
    """
    try:
        names = sorted(n for n in os.listdir(conf_dir) if n.endswith(".conf"))
    except FileNotFoundError:
        return []
    read: dict[str, tuple[dict[str, str], Optional[Postconf]] | Exception] = {}
    for name in names:
        try:
            conf = read_conf(os.path.join(conf_dir, name))
        except (OSError, GeneratorError) as exc:
            read[name] = exc
            continue
        read[name] = conf, Postconf(conf["config_directory"], FACT_PARAMS + SECRET_PARAMS, postconf) if postconf else None
    try:
        from ._postfix_semantics import InstanceNameError, short_instance_name
    except BaseException:
        for got in read.values():
            if not isinstance(got, Exception) and got[1] is not None:
                got[1].reap()
        raise

    out = []
    for name in names:
        got = read[name]
        try:
            # The name becomes paths (RUN_DIR/NAME) and unit names: the rule of multi_instance_name.
            short = short_instance_name(name[: -len(".conf")], source=os.path.join(conf_dir, name))
            if isinstance(got, Exception):
                raise got
        except (OSError, GeneratorError, InstanceNameError) as exc:
            log(f"{name}: {exc}")
            if not isinstance(got, Exception) and got[1] is not None:
                got[1].reap()
            continue
        out.append((short, *got))
    return out


def run(argv: list[str]) -> tuple[int, str, str]:
    return Spawned(argv).result()


class Postconf:
    """postconf -c DIR -x PARAMS, started at once so that it runs while the caller works; output() waits."""

    def __init__(self, config_dir: str, params: tuple[str, ...], postconf: str = POSTCONF) -> None:
        self.config_dir = config_dir
        self.postconf = postconf
        self.child: Optional[Spawned] = None
        self.error: Optional[GeneratorError] = None
        try:
            self.child = Spawned([postconf, "-c", config_dir, "-x", *params])
        except OSError as exc:
            self.error = GeneratorError(f"{postconf}: {exc.strerror}")

    def output(self) -> str:
        """Expanded main.cf values ('name = value' lines), as the daemons will see them."""
        if self.child is None:
            raise self.error or GeneratorError(f"{self.postconf}: not started")
        code, out, err = self.child.result()
        if code != 0:
            raise GeneratorError(f"postconf -c {self.config_dir}: {err.strip() or 'exit ' + str(code)}")
        return out

    def reap(self) -> None:
        """Wait for a postconf whose output is no longer wanted: no zombie, no open pipe."""
        if self.child is not None:
            try:
                self.child.result()
            except OSError:
                pass


def postconf_output(config_dir: str, params: tuple[str, ...], postconf: str = POSTCONF) -> str:
    """Expanded main.cf values ('name = value' lines), as the daemons will see them."""
    return Postconf(config_dir, params, postconf).output()


def postconf_facts(config_dir: str, params: tuple[str, ...], postconf: str = POSTCONF) -> dict[str, str]:
    return parse_postconf(postconf_output(config_dir, params, postconf))


def _exec_lines(template: str) -> list[str]:
    return [line.split("=", 1)[1] for line in template.splitlines()
            if line.strip().startswith(("ExecStart=", "Environment=")) and "=" in line]


def master_units(name: str, config_directory: str = "", unit_dirs: Optional[Sequence[str]] = None) -> tuple[str, ...]:
    """The distribution units that run master(8) for this instance (multi_instance_name or '-').

    Debian up to 12: postfix@INSTANCE.service runs `postmulti -i INSTANCE` ('-' is the primary) and
    postfix.service only groups them. Debian 13: postfix.service runs the primary itself and
    postfix@NAME.service the instance in /etc/postfix-NAME. No template: postfix.service runs the
    primary. A template of neither kind: every candidate, since an unmasked one could start a second
    master on the instance's queue.
    """
    primary = name in ("", "-")
    template = None
    for directory in UNIT_DIRS if unit_dirs is None else unit_dirs:
        try:
            with open(os.path.join(directory, "postfix@.service"), encoding="utf-8", errors="replace") as handle:
                template = handle.read()
            break
        except OSError:
            continue
    if template is None:
        return ("postfix.service",) if primary else ()
    lines = _exec_lines(template)
    postmulti = any("postmulti" in line and "%i" in line for line in lines)
    per_directory = any("MAIL_CONFIG=/etc/postfix-%I" in line for line in lines)
    if postmulti and not per_directory:
        return (f"postfix@{'-' if primary else name}.service",)
    parent, base = os.path.split(config_directory.rstrip("/"))
    by_directory = f"postfix@{base[len('postfix-'):]}.service" if parent == "/etc" and base.startswith("postfix-") \
        and base != "postfix-" else ""
    if per_directory and not postmulti:
        if primary:
            return ("postfix.service",)
        return (by_directory,) if by_directory else ()
    candidates = ["postfix.service", "postfix@-.service"] if primary else [f"postfix@{name}.service", by_directory]
    return tuple(dict.fromkeys(c for c in candidates if c))


# --------------------------------------------------------------------------- who may read smtpd's secrets


def _owner_ids(owner: str) -> tuple[int, set[int]]:
    import grp
    import pwd

    entry = pwd.getpwnam(owner)
    gids = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if owner in g.gr_mem}
    return entry.pw_uid, gids


def _may(st: os.stat_result, uid: int, gids: set[int], bit: int) -> bool | int:
    """True when uid/gids have the permission; else the group that would grant it, else False."""
    if st.st_uid == uid:
        return bool(st.st_mode & (bit << 6))
    if st.st_gid in gids:
        return bool(st.st_mode & (bit << 3))  # POSIX: the group class decides, "other" is not consulted
    if st.st_mode & bit:
        return True
    return st.st_gid if st.st_mode & (bit << 3) else False


# The only groups smtpd (internet-facing) is ever given for its keys: Debian's ssl-cert exists for
# exactly that. Any other group may open other secrets (root, shadow, disk, adm, a user's own group):
# a key readable only through one starts smtpd as root instead (it drops privileges itself). A group
# mail_owner is a member of already (/etc/group) is used as it is: the administrator granted it.
KEY_GROUPS = ("ssl-cert",)


def owner_access(paths: list[str], owner: str, refused: Optional[list[str]] = None) -> tuple[list[str], bool]:
    """(groups that give mail_owner read access, whether that suffices for all paths).

    A group outside KEY_GROUPS (or gid 0) is never granted: the answer is then ([], False), and the
    group is appended to ``refused``.
    """
    import grp

    uid, gids = _owner_ids(owner)
    extra: set[int] = set()
    for path in paths:
        steps = []
        parent = os.path.dirname(path)
        while parent and parent != "/":
            steps.append((parent, 1))  # search (x)
            parent = os.path.dirname(parent)
        steps.append((path, 4))  # read (r)
        for step, bit in steps:
            try:
                st = os.stat(step)
            except OSError:
                break  # missing: Postfix reports it itself
            verdict = _may(st, uid, gids | extra, bit)
            if verdict is False:
                return [], False
            if verdict is not True:
                if not _grantable(int(verdict)):
                    if refused is not None:
                        refused.append(f"{_group_name(int(verdict))} ({step})")
                    return [], False
                extra.add(int(verdict))
    names = sorted(grp.getgrgid(g).gr_name for g in extra)
    return names, True


def _group_name(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _grantable(gid: int) -> bool:
    return gid != 0 and _group_name(gid) in KEY_GROUPS


def secret_paths(facts: dict[str, str], entries: Sequence[Entry], names: tuple[str, ...]) -> list[str]:
    """Files smtpd opens before it could drop privileges (main.cf and -o overrides)."""
    values = [facts.get(n, "") for n in names]
    for entry in entries:
        if os.path.basename(entry.parsed.fields["command"]) == "smtpd":
            values += [v for k, v in entry.options.items() if k in names]
    out: list[str] = []
    for value in values:
        for word in value.replace(",", " ").split():
            if word.startswith("/") and "$" not in word and word not in out:
                out.append(word)
    return out


# --------------------------------------------------------------------------- building


class Inputs:
    """What one instance's units are made from, read without the mapping's import cost."""

    postconf_text: str
    facts: dict[str, str]

    def __init__(self, name: str, conf: dict[str, str], postconf: str = POSTCONF, *,
                 started: Optional[Postconf] = None, wait: bool = True) -> None:
        """started: this instance's postconf, already running. wait=False: return while it runs;
        wait() then completes the inputs (or raises what reading them raised)."""
        self.name = name
        self.conf = conf
        config_dir = conf["config_directory"]
        self._postconf: Optional[Postconf] = started or Postconf(config_dir, FACT_PARAMS + SECRET_PARAMS, postconf)
        self.path = os.path.join(config_dir, "master.cf")
        self.doc: Optional[MasterCf] = None  # master.cf parsed ahead (prepare)
        self._error: Optional[GeneratorError] = None
        try:
            with open(self.path, encoding="utf-8", errors=BYTES_KEPT, newline="") as handle:
                self.text = handle.read()
        except OSError as exc:
            self.text = ""
            self._error = GeneratorError(f"{self.path}: {exc.strerror}")
            self._error.__cause__ = exc
        if wait:
            self.wait()

    def wait(self) -> None:
        """postconf's facts; a postconf error first, then one reading master.cf (as read in that order)."""
        if self._postconf is not None:
            pending, self._postconf = self._postconf, None
            self.postconf_text = pending.output()
            self.facts = parse_postconf(self.postconf_text)
        if self._error is not None:
            raise self._error

    def prepare(self) -> None:
        """Import the mapping and parse master.cf while postconf runs; build() reports any error itself."""
        try:
            from ._masterless_units import build_units  # noqa: F401 - only imported ahead
            from ._postfix_mastercf import MasterCf

            self.doc = MasterCf.parse(self.text, path=self.path)
        except Exception:  # noqa: BLE001 - parsed again by build(), which raises it where it always did
            self.doc = None

    def key_head(self, postconf_text: str) -> str:
        """The start of key(): the instance's conf, postconf's output and master.cf."""
        return "\n".join([f"{k}={v}" for k, v in sorted(self.conf.items())] + [postconf_text, self.text])

    def unchanged_since(self, record: dict[str, str]) -> bool:
        """Whether conf and master.cf are those the saved record was made from (postconf may still run)."""
        if "@postconf" not in record:  # a set of an earlier release
            return self.text in record.get("@inputs", "")
        return record.get("@inputs", "").startswith(self.key_head(record["@postconf"]) + "\n")

    def key(self, lib_dir: str = "") -> str:
        """Equal keys give equal unit sets: then the saved set is written without mapping anything.

        lib_dir: where the installed library lives (default: this file's directory).
        """
        parts = [self.key_head(self.postconf_text)]
        here = lib_dir or os.path.dirname(os.path.abspath(__file__))
        stats = [os.path.join(here, f"{n}.py") for n in LIBRARY]  # a changed library maps anew
        stats.append("/etc/group")
        # Which unit runs master(8) (master_units) decides the masks and Conflicts=.
        stats += [os.path.join(d, "postfix@.service") for d in UNIT_DIRS]
        # smtpd's pre-jail files decide User=/SupplementaryGroups=: their permissions count too.
        words = [w for v in (self.facts.get(p, "") for p in SECRET_PARAMS) for w in v.replace(",", " ").split()]
        words += [w.split("=", 1)[1] for w in self.text.split() if "smtpd_tls_" in w and "=/" in w]
        for word in words:
            while word.startswith("/") and word != "/":
                stats.append(word)
                word = os.path.dirname(word)
        for path in stats:
            try:
                st = os.stat(path)
                # A directory's size/mtime change with every new entry (e.g. /etc); only its access bits matter.
                content = "" if stat.S_ISDIR(st.st_mode) else f":{st.st_size}:{st.st_mtime_ns}"
                parts.append(f"{path}:{st.st_mode}:{st.st_uid}:{st.st_gid}{content}")
            except OSError:
                parts.append(f"{path}:-")
        return "\n".join(parts)


def build(name: str, conf: dict[str, str], *, postconf: str = POSTCONF, inputs: Inputs | None = None,  # type: ignore[no-untyped-def]
          facts: Optional[dict[str, str]] = None):
    """The unit set of one instance, from the files on this host. Raises MasterCfError/GeneratorError.

    facts: postconf's values to map with instead of the inputs' own (a guess, see _generate_one).
    """
    from ._masterless_units import Instance, build_units
    from ._postfix_mastercf import MasterCf

    inputs = inputs or Inputs(name, conf, postconf)
    facts = inputs.facts if facts is None else facts
    doc = inputs.doc or MasterCf.parse(inputs.text, path=inputs.path)
    entries = doc.entries(enabled=True)
    owner = facts.get("mail_owner", "postfix")
    refused: list[str] = []
    try:
        groups, enough = owner_access(secret_paths(facts, entries, SECRET_PARAMS), owner, refused)
    except KeyError as exc:
        raise GeneratorError(f"mail_owner '{owner}' is not a user on this host") from exc
    from_conf = ("chroot", "python", "libexec_directory", "runtime_directory", "max_use_factor")
    extra = {k: v for k, v in conf.items() if k in from_conf}
    instance = Instance.from_params(
        {k: v for k, v in facts.items() if k not in SECRET_PARAMS},
        source=inputs.path,
        supplementary_groups=tuple(groups),
        root_daemons=() if enough else ("smtpd",),
        master_units=master_units(facts.get("multi_instance_name", "") or "-", facts.get("config_directory", "")),
        **extra,
    )
    if instance.short_name != name:
        raise GeneratorError(f"{CONF_DIR}/{name}.conf names instance '{name}', but {conf['config_directory']}/main.cf "
                             f"says multi_instance_name = {facts.get('multi_instance_name') or '(primary)'}")
    unitset = build_units(entries, instance)
    if refused:
        unitset.warnings.append(f"smtpd starts as root and drops privileges itself: its TLS files are readable "
                                f"through group {refused[0]} only, which is not granted to an internet-facing "
                                f"daemon (only {', '.join(KEY_GROUPS)} is; or make mail_owner a member yourself)")
    return unitset


def files_of(unitset: UnitSet) -> dict[str, str]:
    """Relative path -> content; links as '@link:' + target."""
    out = dict(unitset.units)
    out.update({link: "@link:" + target for link, target in unitset.links.items()})
    return out


def saved_record(unitset: UnitSet, inputs: Inputs, lib_dir: str = "") -> dict[str, str]:
    """What save_set() keeps: the files plus the inputs they were made from, the masks, and postconf's
    output on its own (the next run maps with it while its own postconf runs, see _generate_one)."""
    return {**files_of(unitset), "@inputs": inputs.key(lib_dir), "@masks": " ".join(unitset.instance.master_units),
            "@postconf": inputs.postconf_text}


def split_record(record: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    files = {k: v for k, v in record.items() if not k.startswith("@")}
    return files, record.get("@masks", "").split()


# --------------------------------------------------------------------------- writing


def write_tree(root: str, files: dict[str, str]) -> None:
    made: set[str] = set()
    for rel, content in files.items():
        path = os.path.join(root, rel)
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        if content.startswith("@link:"):
            target = content[len("@link:"):]
            link = os.path.join("..", target) if "/" in rel else target
            try:
                os.symlink(link, path)
            except FileExistsError:
                os.unlink(path)
                os.symlink(link, path)
        else:
            # Strict: render_unit wrote every byte a unit needs as an escape, a unit is UTF-8.
            # os.open: a file object per unit costs the generator a millisecond per run.
            data = content.encode("utf-8")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)


def rewrite_tree(root: str, files: dict[str, str], written: dict[str, str]) -> None:
    """Make root hold files where it holds written (written ahead by write_tree): only what differs
    is removed and written again."""
    for rel, content in written.items():
        if files.get(rel) != content:
            try:
                os.unlink(os.path.join(root, rel))  # never written through: it may be a link
            except FileNotFoundError:
                pass
    write_tree(root, {rel: content for rel, content in files.items() if written.get(rel) != content})


def read_tree(root: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, _unused, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = "@link:" + os.path.basename(os.readlink(path))
            else:
                with open(path, encoding="utf-8", errors=BYTES_KEPT) as handle:
                    out[rel] = handle.read()
    return out


# A unit set file: one header line with the SHA-256 of the body, then the body. A torn write (a
# crash, a full disk) loses the end of the body, where the hardening lines of the last units are:
# such a set is refused, never loaded in part. Sets of earlier releases have no header and are
# refused too; the generator then maps master.cf anew, as it does anyway after an upgrade.
SET_HEADER = "# mailfleet.postfix unit set, sha256="


class DamagedSetError(ValueError):
    """A unit set file that is truncated, altered or of an older format: never used."""


def _set_body(files: dict[str, str]) -> str:
    """A unit set as one text: name, length and content records."""
    return "".join(f"{rel}\n{len(content)}\n{content}" for rel, content in sorted(files.items()))


def _digest(body: bytes) -> str:
    # CPython's own SHA-256 (built in): hashlib loads OpenSSL first, ~2 ms of every generator run.
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # Python 3.10, 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found]  # Python 3.12+
        except ImportError:
            from hashlib import sha256  # builds without them
    return sha256(body).hexdigest()


def set_text(files: dict[str, str]) -> str:
    """The content of a unit set file: the checksum line and the records."""
    body = _set_body(files)
    return f"{SET_HEADER}{_digest(body.encode('utf-8', BYTES_KEPT))}\n{body}"


def save_set(path: str, files: dict[str, str]) -> None:
    """Keep a unit set as one file, atomically and durably: a crash leaves the old set or the new one.

    A temporary file in the same directory is written and fsync'ed, renamed over the set, and the
    directory is fsync'ed so the rename itself survives a power loss.
    """
    data = set_text(files).encode("utf-8", BYTES_KEPT)  # @inputs holds master.cf's bytes
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    # A fixed temporary name: one left by a crash is replaced, and never read.
    write_atomic(path, data, mode=0o644, temp=os.path.basename(path) + ".new")


def load_set(path: str) -> dict[str, str]:
    """The unit set kept in path. OSError when it cannot be read; DamagedSetError (a ValueError)
    when its checksum does not match its content, so a truncated or altered set is never used."""
    with open(path, "rb") as handle:
        data = handle.read()
    header, newline, body = data.partition(b"\n")
    head = SET_HEADER.encode()
    if not newline or not header.startswith(head):
        raise DamagedSetError(f"{path}: no checksum line (damaged, or written by an earlier release)")
    if header[len(head):].decode("ascii", "replace") != _digest(body):
        raise DamagedSetError(f"{path}: the checksum does not match the content (truncated or altered)")
    text = body.decode("utf-8", BYTES_KEPT)
    files: dict[str, str] = {}
    pos = 0
    try:
        while pos < len(text):
            rel_end = text.index("\n", pos)
            len_end = text.index("\n", rel_end + 1)
            size = int(text[rel_end + 1:len_end])
            if size < 0 or len_end + 1 + size > len(text):
                raise ValueError("record runs past the end")
            files[text[pos:rel_end]] = text[len_end + 1:len_end + 1 + size]
            pos = len_end + 1 + size
    except ValueError as exc:
        raise DamagedSetError(f"{path}: malformed record at offset {pos}: {exc}") from None
    return files


def last_good(name: str, run_dir: str = RUN_DIR, state_dir: str = STATE_DIR) -> tuple[str, dict[str, str]] | None:
    """The newest usable set: this generator's copy in /run, else the module's in /var/lib.
    A damaged one is logged and skipped, so the next copy (or failure_units) takes its place."""
    for path in (os.path.join(run_dir, name, "units.set"), os.path.join(state_dir, name, "units.set")):
        try:
            files = load_set(path)
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            log(f"instance {name}: not using {path}: {exc}")
            continue
        if files:
            return path, files
    return None


def generate(out_dir: str, early_dir: str, *, conf_dir: str = CONF_DIR, run_dir: str = RUN_DIR,
             state_dir: str = STATE_DIR, postconf: str = POSTCONF) -> int:
    """One generator run; returns the number of instances that fell back to (or lack) a good unit set."""
    failed = 0
    for name, conf, started in _enabled(conf_dir, postconf):
        try:
            failed += _generate_one(name, conf, out_dir, early_dir, run_dir, state_dir, postconf, started)
        except Exception as exc:  # noqa: BLE001 - one instance's write error must not cost the others theirs
            failed += 1
            log(f"instance {name}: cannot write its units: {exc}")
        finally:
            if started is not None:
                started.reap()
    return failed


def _generate_one(name: str, conf: dict[str, str], out_dir: str, early_dir: str, run_dir: str, state_dir: str,
                  postconf: str, started: Optional[Postconf] = None) -> int:
    """Write one instance's units (or its last good set, or failure_units); 1 when it fell back."""
    # Recomputed every run: a distribution upgrade may move master(8) to another unit.
    default_masks = list(master_units("-" if name == "default" else "postfix-" + name, conf.get("config_directory", "")))
    saved: tuple[str, dict[str, str]] | None = None
    looked = False
    failed = 0
    written: dict[str, str] = {}
    try:
        # While postconf runs: read master.cf and the last good set and, unless master.cf is
        # unchanged, import the mapping and parse it (the start-up time a changed master.cf costs).
        inputs = Inputs(name, conf, postconf, started=started, wait=False)
        saved, looked = last_good(name, run_dir, state_dir), True
        guess: Optional[tuple[str, UnitSet]] = None
        if saved is not None and inputs.unchanged_since(saved[1]):
            # Written ahead: the units of an unchanged instance, and also what any failure keeps.
            written = _write_ahead(out_dir, split_record(saved[1])[0])
        elif inputs.text:
            inputs.prepare()
            guess = _guess(name, conf, inputs, saved[1].get("@postconf") if saved else None)
        inputs.wait()
        if saved is not None and saved[1].get("@inputs") == inputs.key():
            files, masks = split_record(saved[1])  # nothing changed: no mapping needed
            if not saved[0].startswith(run_dir):
                _keep_copy(name, os.path.join(run_dir, name, "units.set"), saved[1])
        else:
            # The guess is used only if postconf answered exactly what it was made from: the same facts.
            unitset = None
            if guess is not None:
                if guess[0] == inputs.postconf_text:
                    unitset = guess[1]
                else:
                    inputs.doc = None  # parsed again: mapped with other facts
            files, masks = _build_and_save(name, conf, inputs, run_dir, unitset)
    except Exception as exc:  # noqa: BLE001 - MasterCfError, GeneratorError, OSError: keep the old set
        failed = 1
        if not looked:
            saved = last_good(name, run_dir, state_dir)
        if saved is None:
            log(f"instance {name}: {exc}; no earlier unit set to keep, the instance is not started")
            _mask(early_dir, default_masks)
            rewrite_tree(out_dir, failure_units(name, str(exc)), written)
            return failed
        log(f"instance {name}: {exc}; keeping the last good unit set ({saved[0]})")
        files, masks = split_record(saved[1])
        files.update(failure_units(name, str(exc), kept=saved[0]))
    else:
        files = {**files, **cleared_units(name)}
    rewrite_tree(out_dir, files, written)
    _mask(early_dir, list(dict.fromkeys([*masks, *default_masks])))
    return failed


def _write_ahead(out_dir: str, files: dict[str, str]) -> dict[str, str]:
    """write_tree while postconf runs; returns what was written. If that failed, every name is
    marked unknown: the final rewrite_tree removes and writes them all (and reports an error)."""
    try:
        write_tree(out_dir, files)
    except OSError:
        return dict.fromkeys(files, "\0not written")
    return files


def _keep_copy(name: str, path: str, record: dict[str, str]) -> None:
    """The copy for a later broken master.cf; without it the units are still written."""
    try:
        save_set(path, record)
    except OSError as exc:
        log(f"instance {name}: cannot keep a copy in {path}: {exc}")


def _prefix(name: str) -> str:
    """postfix-<name>, as Instance.prefix; name is a valid short name (enabled_instances)."""
    if name.replace("_", "").replace(".", "").isalnum() and name.isascii() and not name.startswith("."):
        return f"postfix-{name}"
    from ._masterless_units import escape

    return f"postfix-{escape(name)}"


def failure_units(name: str, message: str, *, kept: str = "") -> dict[str, str]:
    """What an instance that cannot be mapped gets: a unit that fails at boot, so `systemctl --failed`
    shows it, with the reason in its journal. Fail-closed: it starts no daemon, and without a last good
    set (kept) the instance's target requires it, so starting the target fails with the same reason
    instead of silently doing nothing; the masks still keep the distribution's master away.
    Once master.cf is fixed, cleared_units() replaces it.
    """
    try:
        from ._masterless_units import exec_quote
    except Exception:  # noqa: BLE001 - a broken library must still produce the failed unit
        def exec_quote(arg: str) -> str:
            return '"see the journal of mailfleet-postfix-generator"'
    prefix = _prefix(name)
    error_unit = f"{prefix}-config-error.service"
    state = f"running the last good units of {kept}" if kept else "instance not started"
    text = _printable(f"mailfleet.postfix: instance {name}: {message}; {state}")
    header = "# Generated by mailfleet.postfix: this instance's master.cf could not be mapped to units.\n"
    files = {error_unit: (
        f"{header}\n[Unit]\nDescription=Postfix {name}: master.cf not mapped ({state})\n"
        "Documentation=man:master(5)\nCollectMode=inactive-or-failed\n\n"
        f"[Service]\nType=oneshot\nExecStart=/bin/echo {exec_quote(text)}\nExecStart=/bin/false\n")}
    if kept:
        files[f"multi-user.target.wants/{error_unit}"] = "@link:" + error_unit
        return files
    target = f"{prefix}.target"
    files[target] = (
        f"{header}\n[Unit]\nDescription=Postfix mail system, instance {name} (master-less): not started, "
        f"see {error_unit}\nRequires={error_unit}\nAfter={error_unit}\n\n[Install]\nWantedBy=multi-user.target\n")
    files[f"multi-user.target.wants/{target}"] = "@link:" + target
    return files


def cleared_units(name: str) -> dict[str, str]:
    """After a good run the error unit is a stub that never runs: a unit whose file is gone keeps its
    failed state ("not-found failed") until reset-failed; loaded from this file with
    CollectMode=inactive-or-failed and unreferenced, systemd forgets it at the next daemon-reload.
    """
    return {f"{_prefix(name)}-config-error.service": (
        "# Generated by mailfleet.postfix: master.cf was mapped; this stub only ends an earlier failure.\n\n"
        f"[Unit]\nDescription=Postfix {name}: master.cf mapped\nCollectMode=inactive-or-failed\n\n"
        "[Service]\nType=oneshot\nExecStart=/bin/true\n")}


def _guess(name: str, conf: dict[str, str], inputs: Inputs, postconf_text: Optional[str]) -> Optional[tuple[str, UnitSet]]:
    """The units mapped with the facts of the last good set, while this run's postconf still runs:
    main.cf seldom changes with master.cf. None when there is no such set or the mapping fails
    (then it runs again with postconf's answer, and reports its error there)."""
    if not postconf_text:
        return None
    try:
        return postconf_text, build(name, conf, inputs=inputs, facts=parse_postconf(postconf_text))
    except Exception:  # noqa: BLE001 - only a guess
        inputs.doc = None
        return None


def _build_and_save(name: str, conf: dict[str, str], inputs: Inputs, run_dir: str,
                    unitset: Optional[UnitSet] = None) -> tuple[dict[str, str], list[str]]:
    if unitset is None:
        unitset = build(name, conf, inputs=inputs)
    for warning in unitset.warnings:
        log(f"instance {name}: {warning}")
    record = saved_record(unitset, inputs)
    _keep_copy(name, os.path.join(run_dir, name, "units.set"), record)
    return split_record(record)


def _mask(early_dir: str, units: list[str] | tuple[str, ...]) -> None:
    """Never a master beside the units: the early dir outranks /etc, so unmask cannot undo it."""
    for unit in units:
        mask = os.path.join(early_dir, unit)
        if not os.path.lexists(mask):
            os.makedirs(early_dir, exist_ok=True)
            os.symlink("/dev/null", mask)


LAUNCHER = """#!{python} -IS
# Installed by mailfleet.postfix (systemd_units): master.cf -> systemd units for master-less instances.
import sys
sys.path.insert(0, {libexec!r})
from mailfleet_postfix._masterless_generator import exit_now, main
exit_now(main(sys.argv[1:]))
"""


def exit_now(code: int) -> None:
    """End the generator without the interpreter's teardown (~2 ms with the library loaded): by now
    every file it wrote is closed and every child reaped; only the standard streams may hold data."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 3):
        log("usage: generator NORMAL_DIR [EARLY_DIR LATE_DIR]")
        return 2
    global SYSLOG
    SYSLOG = True
    out_dir = argv[0]
    early_dir = argv[1] if len(argv) == 3 else argv[0]
    env = os.environ.get
    try:
        # The overrides exist for bench/ and tests; systemd runs generators with a clean environment.
        generate(out_dir, early_dir, conf_dir=env("MAILFLEET_POSTFIX_CONF_DIR", CONF_DIR),
                 run_dir=env("MAILFLEET_POSTFIX_RUN_DIR", RUN_DIR), state_dir=env("MAILFLEET_POSTFIX_STATE_DIR", STATE_DIR))
    except Exception as exc:  # noqa: BLE001 - a generator must never take the boot down
        log(f"unexpected error: {exc!r}")
    # Failures are logged per instance; the generator itself succeeds so systemd keeps the rest.
    return 0
