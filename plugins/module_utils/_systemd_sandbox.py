# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""systemd hardening for master-less Postfix services: one table, by daemon kind.

Private to the mailfleet.postfix collection; the API may change without notice.

In master-less mode master.cf's ``chroot`` column is expressed as systemd
sandboxing instead of Postfix's own ``chroot(queue_directory)``: the daemon sees
the real file system, read-only, with only the queue and data directories
writable, no home directories, a private /tmp and no devices. That needs no jail
to populate (jails go stale: resolv.conf, CA dirs, NSS modules) and works for
every daemon. ``chroot = postfix`` keeps Postfix's ``-c`` instead (the jail must
then be synced, and CAP_SYS_CHROOT stays in the bounding set).

The ``unpriv`` column picks the run model (see ``_postfix_semantics.DAEMONS.owner``):

* owner: systemd starts the daemon as ``mail_owner`` with no capabilities at all
  (no ``-u``); privileged system calls fail with EPERM.
* root: the daemon starts as root like under master(8) and drops to
  ``mail_owner`` itself (``-u``); the bounding set keeps only what that needs.
  CAP_DAC_OVERRIDE is needed because pre-jail init reaches ``private/`` (0700
  postfix) as root.

Delivery agents are the exception. local(8) runs users' ``.forward`` commands
and writes to their homes and to the mail spool; pipe(8) and spawn(8) run
arbitrary programs as arbitrary users (maildrop, dovecot-lda, mailman, SMS
modems). Those programs may be setuid/setgid (sendmail -> postdrop is setgid,
procmail, dotlock helpers), may need /dev, their own /tmp or a JIT, so they get
no NoNewPrivileges, RestrictSUIDSGID, MemoryDenyWriteExecute or system call
filter, and keep /home writable; what they still get cannot break a delivery.
"""

from __future__ import annotations

import posixpath

from ._host import Record
from ._postfix_mastercf import MasterCfError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:  # annotations only: the systemd generator imports this module at every boot
    from typing import Iterable, Optional, Sequence, Union


# Every Postfix daemon probes socket(AF_INET6) in inet_proto_init() and fatals on
# errors other than EAFNOSUPPORT; getifaddrs() needs netlink (inet_addr_local).
POSTFIX_FAMILIES = "AF_UNIX AF_INET AF_INET6 AF_NETLINK"
# Root model: -u needs setuid/setgid/initgroups; pre-jail init needs DAC_OVERRIDE.
ROOT_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_DAC_OVERRIDE")
# Delivery as the recipient: seteuid, mailbox creation and ownership, spool locks.
DELIVERY_CAPS = ROOT_CAPS + ("CAP_DAC_READ_SEARCH", "CAP_CHOWN", "CAP_FOWNER", "CAP_FSETID")
# local and pipe kill timed-out commands that run as another user.
COMMAND_CAPS = DELIVERY_CAPS + ("CAP_KILL",)
_HOME_ROOTS = ("/home", "/root", "/run/user")


class Profile(Record):
    """What one kind of daemon must be able to reach."""

    _fields = ("system", "home", "private_tmp", "devices", "nnp", "mdwe", "syscalls", "ip", "caps", "writes",
               "clock", "namespaces")
    system: str  # ProtectSystem=
    home: str  # ProtectHome=
    private_tmp: bool  # PrivateTmp=
    devices: bool  # PrivateDevices=
    nnp: bool  # NoNewPrivileges=, RestrictSUIDSGID=
    mdwe: bool  # MemoryDenyWriteExecute=
    syscalls: bool  # SystemCallFilter=@system-service, PrivateIPC=, ProcSubset=pid
    ip: bool  # may talk IP (else IPAddressDeny=any)
    caps: tuple[str, ...]  # bounding set when started as root
    writes: tuple[str, ...] = ()  # instance paths to make writable (names of Paths fields)
    clock: bool = True  # ProtectClock= (adds a device ACL, so not where /dev is open)
    namespaces: bool = True  # RestrictNamespaces=


#                          system    home         tmp    devices nnp    mdwe   syscalls ip     caps
PROFILES: dict[str, Profile] = {
    # Postfix-internal daemons that only touch queue and data files.
    "queue": Profile("strict", "yes", True, True, True, True, True, False, ROOT_CAPS),
    # Postfix-internal daemons that talk to the network (SMTP, DNS, milters, tcp: tables).
    "network": Profile("strict", "yes", True, True, True, True, True, True, ROOT_CAPS),
    # proxymap reads tables anywhere; proxywrite also updates them.
    "maps": Profile("strict", "read-only", True, True, True, True, True, True, ROOT_CAPS),
    "mapwrite": Profile("full", "read-only", True, True, True, True, True, True, ROOT_CAPS),
    # postlogd appends to maillog_file.
    "log": Profile("strict", "yes", True, True, True, True, True, False, ROOT_CAPS, writes=("maillog",)),
    # virtual writes below virtual_mailbox_base as the virtual uid; runs no programs.
    "virtual": Profile("strict", "yes", True, True, True, True, True, False, DELIVERY_CAPS, writes=("mailbox_base",)),
    # local writes to homes and the spool and runs users' commands.
    "local": Profile("full", "no", False, True, False, False, False, True, COMMAND_CAPS),
    # pipe and spawn run arbitrary programs as arbitrary users.
    "command": Profile("full", "no", False, False, False, False, False, True, COMMAND_CAPS, clock=False, namespaces=False),
}


# What master.cf's chroot column becomes: the one table (docs/systemd.md is generated from it and
# from PROFILES by tools/chroot-table.py). Keyed by the instance's chroot mode and the column's
# effective value ('-' resolves through compatibility_level, _postfix_semantics.flag_of).
class ChrootRule(Record):
    _fields = ("keep_c", "owner_ok", "effect")
    keep_c: bool  # the daemon gets master's -c: Postfix chroots into queue_directory itself
    owner_ok: bool  # may systemd start it as mail_owner (chroot(2) needs root, so not with -c)
    effect: str  # for the docs


CHROOT_MODES = ("sandbox", "postfix")
CHROOT_RULES: dict[tuple[str, bool], ChrootRule] = {
    ("sandbox", True): ChrootRule(False, True, "no `-c`: the sandbox of its kind replaces the jail"),
    # n does not loosen the sandbox: the profile is what the daemon kind needs, the jail is gone either way.
    ("sandbox", False): ChrootRule(False, True, "no `-c`: the same sandbox of its kind as `y`"),
    ("postfix", True): ChrootRule(True, False, "`-c` kept (jail synced by `mailfleet.postfix.chroot`), "
                                  "started as root with `CAP_SYS_CHROOT`, plus the sandbox of its kind"),
    ("postfix", False): ChrootRule(False, True, "no `-c`: the sandbox of its kind"),
}


def chroot_rule(mode: str, chroot: bool) -> ChrootRule:
    if mode not in CHROOT_MODES:
        raise ValueError(f"chroot mode '{mode}' is not one of {', '.join(CHROOT_MODES)}")
    return CHROOT_RULES[(mode, chroot)]


# The main.cf parameter each Paths field comes from, for errors.
PATH_PARAMS = {"maillog": "maillog_file", "mailbox_base": "virtual_mailbox_base"}


# Lookup tables a daemon of a kind without IP (IPAddressDeny=any) opens itself, by main.cf parameter
# (its own -o values count whatever their name). Every other daemon with tables has IP anyway
# (cleanup, trivial-rewrite, smtpd, local: header_checks, canonical/transport/alias maps), and proxy:
# tables go through proxymap over a UNIX socket.
TABLE_PARAMS: dict[str, tuple[str, ...]] = {
    "virtual": ("virtual_mailbox_maps", "virtual_uid_maps", "virtual_gid_maps"),
    "verify": ("address_verify_map",),
}
# Table types that talk to a server (postconf -m). tcp: and socketmap:inet: name the host in main.cf;
# the others name it in a file of their own, which can change without the units being made anew.
NETWORK_TABLES = ("tcp", "socketmap", "mysql", "pgsql", "ldap", "memcache", "mongodb", "nis", "nisplus")


def table_network(values: Iterable[str]) -> Optional[list[str]]:
    """What the tables in ``values`` need: None nothing, [] any host, else IPAddressAllow= entries.

    A numeric address (tcp:192.0.2.1:9000, socketmap:inet:[::1]:8000:name) or localhost is allowed
    exactly; a host name (its addresses change), a table configured in its own file (mysql:, ldap:,
    ...) or a parameter reference (``$name``) lifts the address filter for that daemon.
    """
    allow: list[str] = []
    needed = False
    for value in values:
        for token in value.replace(",", " ").replace("{", " ").replace("}", " ").split():
            if "$" in token:
                return []  # -o x=$my_maps: not expanded here, so any table may be behind it
            kind, _sep, rest = token.partition(":")
            kind = kind.lower()
            if kind == "proxy" or kind not in NETWORK_TABLES:
                continue
            if kind == "socketmap":
                if not rest.lower().startswith("inet:"):
                    continue  # socketmap:unix:
                rest = rest[len("inet:"):]
            needed = True
            host = _table_host(rest) if kind in ("tcp", "socketmap") else ""
            if not host:
                return []
            if host not in allow:
                allow.append(host)
    return allow if needed else None


def _table_host(endpoint: str) -> str:
    """host:port[:name] -> an IPAddressAllow= entry, '' when only a name (or nothing) is known."""
    if endpoint.startswith("["):
        host = endpoint[1:].partition("]")[0]
    else:
        host = endpoint.partition(":")[0]
    if host.lower() == "localhost":
        return "localhost"
    parts = host.split(".")
    if len(parts) == 4 and all(p.isdigit() and p.isascii() and int(p) < 256 for p in parts):
        return host
    if ":" in host and "%" not in host and all(c in "0123456789abcdefABCDEF:." for c in host):
        return host
    return ""


class Paths(Record):
    """Host paths a profile may need to write."""

    _fields = ("queue_directory", "data_directory", "runtime_directory", "maillog", "mailbox_base")
    queue_directory: str
    data_directory: str
    runtime_directory: str = ""
    maillog: str = ""  # maillog_file, when it is a plain file
    mailbox_base: str = ""  # virtual_mailbox_base, when known


def directives(
    kind: str,
    *,
    owner: bool,
    keep_chroot: bool,
    paths: Paths,
    mail_owner: str,
    mail_group: str,
    supplementary_groups: Iterable[str] = (),
    network: Optional[list[str]] = None,
) -> list[tuple[str, str]]:
    """[Service] settings for one daemon kind; ``owner`` selects the run model.

    ``network`` (see table_network()) opens a kind without IP to the hosts of its lookup tables.
    """
    prof = PROFILES[kind]
    out: list[tuple[str, str]] = []
    add = out.append
    if owner:
        add(("User", mail_owner))
        add(("Group", mail_group))
        groups = " ".join(supplementary_groups)
        if groups:
            add(("SupplementaryGroups", groups))
    system, home, writable = _filesystem(prof, paths)
    add(("ProtectSystem", system))
    if writable:
        names = {getattr(paths, f): PATH_PARAMS.get(f, f) for f in reversed(Paths._fields) if getattr(paths, f)}
        add(("ReadWritePaths", list_paths(writable, [names.get(p, "a path") for p in writable], prefix="-")))
    add(("ProtectHome", home))
    add(("PrivateTmp", _yn(prof.private_tmp)))
    add(("PrivateDevices", _yn(prof.devices)))
    if prof.syscalls:
        add(("PrivateIPC", "yes"))
        add(("PrivateMounts", "yes"))
        add(("ProtectProc", "invisible"))
        add(("ProcSubset", "pid"))
    for name in ("ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
                 "ProtectHostname", "LockPersonality", "RestrictRealtime"):
        add((name, "yes"))
    if prof.clock:
        add(("ProtectClock", "yes"))
    if prof.namespaces:
        add(("RestrictNamespaces", "yes"))
    add(("SystemCallArchitectures", "native"))
    if prof.nnp:
        add(("NoNewPrivileges", "yes"))
        add(("RestrictSUIDSGID", "yes"))
    if prof.mdwe:
        add(("MemoryDenyWriteExecute", "yes"))
    if kind != "command":
        add(("RestrictAddressFamilies", POSTFIX_FAMILIES))
    if not prof.ip and network != []:
        add(("IPAddressDeny", "any"))
        if network:
            add(("IPAddressAllow", " ".join(network)))
    out.extend(_privileges(prof, owner=owner, keep_chroot=keep_chroot))
    return out


def _filesystem(prof: Profile, paths: Paths) -> tuple[str, str, list[str]]:
    system, home = prof.system, prof.home
    writable: list[str] = []
    if system == "strict":
        writable = [paths.queue_directory, paths.data_directory]
    for name in prof.writes:
        extra = getattr(paths, name)
        if not extra:
            # Unknown or non-file target: fall back to the looser setting, never break delivery.
            system = "full"
            continue
        writable.append(extra)
        if any(_below(extra, root) for root in _HOME_ROOTS):
            home = "no"
    return system, home, _unique(writable)


def _privileges(prof: Profile, *, owner: bool, keep_chroot: bool) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if owner:
        out.append(("CapabilityBoundingSet", ""))
        out.append(("AmbientCapabilities", ""))
    else:
        caps = prof.caps + (("CAP_SYS_CHROOT",) if keep_chroot else ())
        out.append(("CapabilityBoundingSet", " ".join(caps)))
    if prof.syscalls:
        out.append(("SystemCallFilter", "@system-service"))
        if owner:
            out.append(("SystemCallFilter", "~@privileged"))
        elif keep_chroot:
            out.append(("SystemCallFilter", "chroot"))
        out.append(("SystemCallErrorNumber", "EPERM"))
    return out


def holder_directives(*, runtime_directory: str, queue_directory: str, data_directory: str) -> list[tuple[str, str]]:
    """The per-instance status holder: root (it chowns lock files, holds master's locks), talks to PID 1."""
    return [
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", " ".join([list_path(runtime_directory, "runtime_directory"),
                                     list_path(posixpath.join(queue_directory, "pid"), "queue_directory", prefix="-"),
                                     list_path(data_directory, "data_directory", prefix="-")])),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("NoNewPrivileges", "yes"),
        ("SystemCallArchitectures", "native"),
        ("RestrictAddressFamilies", "AF_UNIX AF_NETLINK"),  # AF_NETLINK: sock_diag, the backlog of unix listeners
        ("IPAddressDeny", "any"),
        ("CapabilityBoundingSet", "CAP_CHOWN CAP_DAC_OVERRIDE"),  # master.lock is mail_owner's 0600
    ]


def wakeup_directives(*, mail_owner: str, mail_group: str) -> list[tuple[str, str]]:
    """postkick as mail_owner: it only connects to a socket or opens a FIFO."""
    out = [("User", mail_owner), ("Group", mail_group)]
    out.extend(d for d in directives("queue", owner=True, keep_chroot=False,
                                     paths=Paths("", ""), mail_owner=mail_owner, mail_group=mail_group)
               if d[0] not in ("User", "Group", "ProtectSystem", "ReadWritePaths"))
    out.insert(2, ("ProtectSystem", "strict"))
    return out


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"


def _below(path: str, root: str) -> bool:
    path = posixpath.normpath(path)
    return path == root or path.startswith(root + "/")


def _unique(items: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item and item not in seen:
            seen.append(item)
    return seen


def writable_target(value: Optional[str]) -> str:
    """An absolute directory from a main.cf value, or '' when it cannot be known offline."""
    if not value or "$" in value or not value.startswith("/"):
        return ""
    return posixpath.normpath(value)


# --------------------------------------------------------------------------- paths in unit settings
#
# Every path a unit names comes from main.cf or a -o value (queue_directory, virtual_mailbox_base,
# maillog_file, ...), so it is quoted as systemd reads it back, never trusted to be plain:
#
# * list settings (ReadWritePaths=, ReadOnlyPaths=, InaccessiblePaths=, ...) split their value into
#   words on whitespace, honour '...' and "..." quotes and backslash escapes (extract_first_word()
#   with EXTRACT_UNQUOTE; some versions add EXTRACT_CUNESCAPE), then expand %-specifiers in each word
#   (unit_path_printf()) and take a leading '-' (and '+') as a flag;
# * single-path settings (WorkingDirectory=, PIDFile=, PathChanged=) take the whole value, strip the
#   blanks around it and expand %-specifiers: no quotes, no escapes.
#
# A word is written so that both splitting variants read it back alike: '%' doubled, and, where
# anything could split or unquote it, in double quotes with only '\\' and '"' escaped (\\\\ and \\"
# mean the same with and without C unescaping). What no unit line can carry (NUL, newline, other
# control characters, bytes that are not UTF-8) and what systemd would drop with a warning (relative
# or non-normalized paths: a dropped ReadOnlyPaths= word fails open) is refused.

_LIST_SPECIAL = frozenset(" \"'\\")


def _path_problem(path: str, *, single: bool) -> str:
    if any("\udc80" <= char <= "\udcff" for char in path):
        return "is not UTF-8: systemd cannot carry these bytes in a unit file"
    if any(char < " " or char == "\x7f" for char in path):
        return "contains a control character (NUL, newline, tab, ...), which no unit setting can carry"
    if not path.startswith("/"):
        return "is not an absolute path"
    if any(part in (".", "..") for part in path.split("/")):
        return "is not normalized ('.' or '..'): systemd ignores such a path"
    if single and (path != path.strip() or path.endswith("\\")):
        return "ends in a blank or a backslash, which this single-path setting cannot carry"
    return ""


def _refuse(path: str, what: str, problem: str) -> MasterCfError:
    shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    shown = "".join(c if c >= " " and c != "\x7f" else ascii(c)[1:-1] for c in shown)
    return MasterCfError(f"{what} '{shown}' {problem}", field_name=what, value=path)


def list_path(path: str, what: str = "a path", *, prefix: str = "") -> str:
    """One absolute ``path`` as one word of a list setting; ``prefix`` ('-', '+') is systemd's flag.

    ``what`` names the parameter it comes from, for the error (MasterCfError) when it cannot be written.
    """
    problem = _path_problem(path, single=False)
    if problem:
        raise _refuse(path, what, problem)
    word = prefix + path
    if _LIST_SPECIAL.isdisjoint(word):
        return word.replace("%", "%%")  # the usual case: unchanged but for specifiers
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def list_paths(paths: Iterable[str], what: Union[str, Sequence[str]] = "a path", *, prefix: str = "") -> str:
    """Several paths as one list setting's value; ``what`` one name or one per path."""
    items = list(paths)
    names = [what] * len(items) if isinstance(what, str) else list(what)
    return " ".join(list_path(p, n, prefix=prefix) for p, n in zip(items, names))


def unit_path(path: str, what: str = "a path") -> str:
    """One absolute ``path`` as the whole value of a single-path setting (WorkingDirectory=, PIDFile=)."""
    problem = _path_problem(path, single=True)
    if problem:
        raise _refuse(path, what, problem)
    return path.replace("%", "%%")
