# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""master(8)'s reading of master.cf: the one core both orchestration modes consume.

Private to the mailfleet.postfix collection; the API may change without notice.

Every rule here is written once, after Postfix's own source, and used by the
master-less units (``_masterless_units``), the classic unit and jail (``_classic_unit``,
``_classic_chroot``), the ``instance`` module's listener checks and ``master_info``:

* the instance's facts that master reads from main.cf (``Facts``), parsed the way
  Postfix parses them: a malformed ``compatibility_level`` or an unknown
  ``inet_protocols`` word stops master(8), so it stops us too (``InstanceFactsError``);
* which entries run: ``master_service_disable`` and ``inet_protocols``
  (master_ent.c set_master_ent(), match_service.c), and duplicates, where the
  last entry wins with a warning (master_conf.c master_config());
* the effective value of every column, ``-`` included (master_ent.c get_master_ent());
* the daemon table (what each Postfix daemon is and how it may be run);
* where each entry listens (host:port, inet_interfaces, inet_protocols,
  known_tcp_ports; private/public paths), and which endpoints collide;
* the argv master(8) gives each daemon.

Stdlib only and cheap to import: the on-host systemd generator imports it at
every boot and daemon-reload.
"""

from __future__ import annotations

import posixpath

from ._host import Record
from ._postfix_mastercf import MasterCfError, _extpar, active_entries, field_error

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:  # annotations only
    from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

    from ._postfix_mastercf import Entry, MasterCf

    Resolver = Callable[[str], list[str]]
    PortResolver = Callable[[str], int]

# --------------------------------------------------------------------------- instance names

# postmulti(1) -I accepts a name that starts with "postfix-" and is made of ASCII letters, digits and
# "!@%-_=+:./" without "/" (postmulti.c check_name_assignments()). The part after "postfix-" (the short
# name) becomes a path component (/run/mailfleet-postfix/NAME, /var/lib/mailfleet-postfix/NAME, the
# generator's NAME.conf) and part of every unit name, so of what postmulti accepts this refuses:
# "." and ".." (they leave the directory), "%" (a systemd specifier), "@" (a template's separator),
# ":", "!", "=", "+" (separators or prefixes in systemd settings), a leading "-" (an option to the
# commands that take it), "default" (the primary's short name) and more than INSTANCE_SHORT_MAX
# characters (unit names end at 255 and systemd escapes each "-" as 4 characters).
INSTANCE_PREFIX = "postfix-"
PRIMARY_SHORT_NAME = "default"
INSTANCE_SHORT_MAX = 32
_INSTANCE_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_.-"


class InstanceNameError(MasterCfError):
    """An instance name that cannot name the instance's paths and units."""


def _name_shown(value: str) -> str:
    shown = value if len(value) <= 60 else value[:60] + "..."
    return ascii(shown)[1:-1]  # NUL, newline, non-ASCII as escapes: the message stays one line


def short_instance_name(short: str, *, source: str = "main.cf", value: Optional[str] = None) -> str:
    """``short`` unchanged if it is safe as a path component and in unit names ('default' included)."""
    original = short if value is None else value
    problem = ""
    if not short:
        problem = f"nothing follows '{INSTANCE_PREFIX}'"
    elif not short.isascii() or short.strip(_INSTANCE_CHARS):
        problem = "use ASCII letters, digits, '_', '.' and '-' only"
    elif short in (".", ".."):
        problem = "'.' and '..' would leave the instance's directory"
    elif short.startswith("-"):
        problem = f"the part after '{INSTANCE_PREFIX}' must not start with '-'"
    elif len(short) > INSTANCE_SHORT_MAX:
        problem = f"the part after '{INSTANCE_PREFIX}' has more than {INSTANCE_SHORT_MAX} characters"
    if problem:
        raise InstanceNameError(f"instance name '{_name_shown(original)}' cannot name the instance's paths and "
                                f"units: {problem}", path=source, field_name="multi_instance_name", value=original)
    return short


def instance_name(value: str, *, source: str = "main.cf") -> str:
    """A valid multi_instance_name: '-' for the primary ('' or '-'), else 'postfix-NAME' unchanged.

    Raises InstanceNameError. Nothing is stripped: a name with a newline is refused, not repaired.
    """
    if value in ("", "-"):
        return "-"
    if not value.startswith(INSTANCE_PREFIX):
        raise InstanceNameError(f"instance name '{_name_shown(value)}' must be '-' (the primary instance) or "
                                f"start with '{INSTANCE_PREFIX}', as postmulti requires", path=source,
                                field_name="multi_instance_name", value=value)
    short = value[len(INSTANCE_PREFIX):]
    if short == PRIMARY_SHORT_NAME:
        raise InstanceNameError(f"instance name '{value}' would share the primary instance's units and "
                                f"directories ('{PRIMARY_SHORT_NAME}')", path=source,
                                field_name="multi_instance_name", value=value)
    short_instance_name(short, source=source, value=value)
    return value


def instance_short_name(value: str, *, source: str = "main.cf") -> str:
    """'default' for the primary, 'out' for postfix-out: the instance's name in paths and unit names."""
    name = instance_name(value, source=source)
    return PRIMARY_SHORT_NAME if name == "-" else name[len(INSTANCE_PREFIX):]


# --------------------------------------------------------------------------- the instance's facts

# Postfix's known_tcp_ports default (3.8+; older releases resolve the same names via services(5)).
DEFAULT_KNOWN_TCP_PORTS = "lmtp=24, smtp=25, smtps=submissions=465, submission=587"


class InstanceFactsError(MasterCfError):
    """A main.cf fact master(8) itself refuses to start with."""


class Facts(Record):
    """The main.cf parameters master(8) consults when it reads master.cf."""

    _fields = ("compatibility_level", "default_process_limit", "inet_interfaces", "inet_protocols",
               "master_service_disable", "known_tcp_ports", "queue_directory", "facts_source")
    compatibility_level: str = "0"  # Postfix's built-in default; main.cf.dist sets the current level
    default_process_limit: int = 100
    inet_interfaces: str = "all"
    inet_protocols: str = "all"
    master_service_disable: str = ""
    known_tcp_ports: str = DEFAULT_KNOWN_TCP_PORTS
    queue_directory: str = "/var/spool/postfix"
    facts_source: str = "main.cf"  # for messages

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any], *, source: str = "main.cf") -> Facts:
        """From postconf output (strings); absent parameters keep Postfix's defaults."""
        values: dict[str, Any] = {"facts_source": source}
        for key in cls._fields:
            value = params.get(key)
            if value is not None and key != "facts_source":
                values[key] = str(value).strip()
        if "default_process_limit" in values:
            values["default_process_limit"] = atoi(values["default_process_limit"], 100)
        return cls(**values)


def _facts_error(facts: Any, name: str, value: str, message: str) -> InstanceFactsError:
    return InstanceFactsError(f"{name} = {value}: {message}; master(8) refuses to start with it",
                              path=getattr(facts, "facts_source", "") or "main.cf", field_name=name, value=value)


def _leading_int(text: str) -> Optional[int]:
    """The number re.match(r"\\s*(\\d+)", text) finds (isspace and isdecimal are re's \\s and \\d)."""
    text = text.lstrip()
    end = 0
    while end < len(text) and text[end].isdecimal():
        end += 1
    return int(text[:end]) if end else None


def atoi(text: str, default: int) -> int:
    number = _leading_int(str(text))
    return default if number is None else number


_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def time_seconds(text: str, default: int, unit: str = "s") -> int:
    """conv_time.c: a decimal number and one unit letter (w, d, h, m, s; none: ``unit``); else ``default``
    (a value master(8) would refuse)."""
    text = str(text).lstrip(" \t\n\r\f\v")
    digits = text[1:] if text[:1] == "+" else text
    end = 0
    while end < len(digits) and digits[end].isdecimal() and digits[end].isascii():
        end += 1
    if not end:
        return default
    seconds = int(digits[:end]) * _TIME_UNITS.get(digits[end:end + 1] or unit, 0)
    return seconds if 0 < seconds < 2 ** 31 else default


def compat_level(text: str) -> Optional[tuple[int, ...]]:
    """compat_level.c compat_level_from_string(): major[.minor[.patch]], else None (fatal in Postfix)."""
    parts = text.split(".")
    numbers = []
    for part in parts:
        digits = part.lstrip(" \t\n\r\f\v")  # strtol() skips leading space and takes a sign
        sign, digits = (digits[0], digits[1:]) if digits[:1] in ("+", "-") else ("", digits)
        if not (digits.isdigit() and digits.isascii()) or (sign == "-" and int(digits) != 0):
            return None
        numbers.append(int(digits))
    return tuple(numbers) if 1 <= len(numbers) <= 3 else None


def chroot_default(facts: Any) -> bool:
    """What '-' in the chroot column means: y below compatibility_level 1 (master_ent.c)."""
    value = str(facts.compatibility_level).strip()
    level = compat_level(value)
    if level is None:
        raise _facts_error(facts, "compatibility_level", value, "malformed compatibility level syntax")
    return level < (1,)


_PROTOCOLS = {"all": (4, 6), "ipv4": (4,), "ipv6": (6,)}


def inet_families(facts: Any) -> list[int]:
    """inet_proto.c: inet_protocols through name_mask(): all, ipv4, ipv6 (case matters), else fatal."""
    value = str(facts.inet_protocols)
    found: set[int] = set()
    for word in words(value):
        if word not in _PROTOCOLS:
            raise _facts_error(facts, "inet_protocols", value, f"unknown value '{word}' (all, ipv4 or ipv6)")
        found.update(_PROTOCOLS[word])
    return sorted(found)


def words(value: str) -> list[str]:
    """Postfix list syntax: words separated by whitespace and commas."""
    return value.replace(",", " ").split()


def known_ports(facts: Any) -> dict[str, int]:
    """known_tcp_ports: name=name=...=number groups."""
    table: dict[str, int] = {}
    for group in words(str(getattr(facts, "known_tcp_ports", DEFAULT_KNOWN_TCP_PORTS) or "")):
        parts = group.split("=")
        if len(parts) > 1 and parts[-1].isdigit():
            for name in parts[:-1]:
                table[name] = int(parts[-1])
    return table


# --------------------------------------------------------------------------- columns


class Columns(Record):
    """An entry's columns as master(8) uses them ('-' resolved)."""

    _fields = ("private", "unpriv", "chroot", "wakeup", "conditional", "maxproc")
    private: bool
    unpriv: bool
    chroot: bool
    wakeup: int  # seconds; 0: none
    conditional: bool  # '?': no wakeup before first use
    maxproc: int  # 0: no limit


# master_ent.c get_int_ent(): atoi() into an int, fatal when below 0. glibc's atoi() wraps what does not
# fit (99999999999999999999 becomes -1: fatal; 4294967296 becomes 0: no limit), and systemd ignores a
# MaxConnections= or OnUnitActiveSec= it cannot parse: a wakeup or maxproc above INT_MAX is refused.
INT_MAX = 2147483647


def check_int_columns(fields: Mapping[str, str], *, path: str = "master.cf", line: Optional[int] = None) -> None:
    """wakeup and maxproc (already digits, '?' or '-') within the int master(8) reads them into."""
    for name in ("wakeup", "maxproc"):
        digits = fields[name][:-1] if fields[name].endswith("?") else fields[name]
        if digits != "-" and int(digits) > INT_MAX:
            raise field_error(name, fields[name], f"at most {INT_MAX} (master(8) reads it into an int)",
                              path=path, line=line)


def maxproc_of(entry: Entry, facts: Any) -> int:
    value = entry.parsed.fields["maxproc"]
    return int(facts.default_process_limit) if value == "-" else atoi(value, 0)


def flag_of(entry: Entry, name: str, facts: Any) -> bool:
    """private, unpriv: '-' is y; chroot: '-' is y below compatibility_level 1."""
    value = entry.parsed.fields[name]
    if value != "-":
        return value == "y"
    return chroot_default(facts) if name == "chroot" else True


def wakeup_of(entry: Entry) -> tuple[int, bool]:
    """(seconds, conditional): master reads the leading digits; a trailing '?' waits for first use."""
    value = entry.parsed.fields["wakeup"]
    if value == "-":
        return 0, False
    seconds = atoi(value, 0)
    return seconds, seconds > 0 and value.endswith("?")


def columns(entry: Entry, facts: Any) -> Columns:
    seconds, conditional = wakeup_of(entry)
    return Columns(private=flag_of(entry, "private", facts), unpriv=flag_of(entry, "unpriv", facts),
                   chroot=flag_of(entry, "chroot", facts), wakeup=seconds, conditional=conditional,
                   maxproc=maxproc_of(entry, facts))


# --------------------------------------------------------------------------- which entries run


def disabled_by(service: str, kind: str, master_service_disable: str) -> bool:
    """match_service.c: name/type or type patterns (name.type is the old form), '!' negates,
    the first match wins, case does not matter."""
    name_type = f"{service}/{kind}".lower()
    for pattern in master_service_disable.replace(",", " ").split():
        if "/" not in pattern and "." in pattern:
            head, _unused, tail = pattern.rpartition(".")
            pattern = f"{head}/{tail}"
        match = True
        while pattern.startswith("!"):
            pattern, match = pattern[1:], not match
        if (name_type if "/" in pattern else kind.lower()) == pattern.lower():
            return match
    return False


def disabled(entry: Entry, facts: Any) -> bool:
    """set_master_ent(): master_service_disable, and every inet entry when inet_protocols is empty."""
    kind = entry.type
    if kind == "inet" and not inet_families(facts):
        return True
    return disabled_by(entry.service, kind, str(facts.master_service_disable or ""))


def service_key(entry: Entry, facts: Any = None) -> tuple[str, str]:
    """master_conf.c's identity of a service: its canonical endpoint name and its type."""
    fields_ = entry.parsed.fields
    name, kind = fields_["service"], fields_["type"]
    if kind == "inet":
        host, port = split_host_port(name)
        table = known_ports(facts) if facts is not None else known_ports(Facts())
        port = str(table.get(port, port))
        numeric = _numeric(host) if host else None
        host = str(numeric) if numeric is not None else host
        return (f"[{host}]:{port}" if host else port, kind)
    private = fields_["private"] != "n"
    return (("private/" if private else "public/") + name, kind)


def running_entries(
    items: Union[str, MasterCf, Iterable[Any]], facts: Any, *, path: str = "master.cf",
) -> tuple[list[Entry], list[str]]:
    """The entries master(8) runs, in file order, and its warnings.

    Disabled entries are skipped before anything else is read (set_master_ent()).
    Of two entries with the same service key the last one wins (master_config():
    "duplicate master.cf entry ... -- using the last entry"); the warning names
    both lines.
    """
    entries = active_entries(items, path=path)
    chosen: dict[tuple[str, str], Entry] = {}
    warnings: list[str] = []
    for entry in entries:
        entry.validate()
        if disabled(entry, facts):
            continue
        key = service_key(entry, facts)
        earlier = chosen.get(key)
        if earlier is not None:
            warnings.append(duplicate_warning(earlier, entry))
        chosen[key] = entry
    kept = set(map(id, chosen.values()))
    return [e for e in entries if id(e) in kept], warnings


def duplicate_warning(earlier: Entry, later: Entry) -> str:
    return (f"{later.path} line {later.first_line}: duplicate master.cf entry for service "
            f"'{later.service} {later.type}' (also at line {earlier.first_line}); master(8) uses the last "
            f"one, line {later.first_line}, and ignores line {earlier.first_line}")


def duplicates(entries: Sequence[Entry], facts: Any = None) -> list[tuple[Entry, Entry]]:
    """(earlier, later) pairs of active entries with the same service key, disabled ones included."""
    seen: dict[tuple[str, str], Entry] = {}
    out = []
    for entry in entries:
        key = service_key(entry, facts)
        if key in seen:
            out.append((seen[key], entry))
        seen[key] = entry
    return out


# --------------------------------------------------------------------------- the daemon table

ACCEPT = "accept"
POOL = "pool"


class Daemon(Record):
    _fields = ("skeleton", "flags", "mode", "kind", "owner", "persistent", "retire")
    skeleton: str  # src/master/<skeleton>_server.c
    flags: str  # S: solitary (maxproc 1), U: unlimited (maxproc 0), P: privileged (unpriv n)
    mode: str  # master-less: ACCEPT (Accept=yes, -S per connection) or POOL (bridge)
    kind: str  # sandbox profile, _systemd_sandbox.PROFILES
    owner: bool  # unpriv=y: systemd may start it as mail_owner (no -u, no capabilities)
    persistent: bool = False  # runs from instance start on, never idles out
    retire: bool = False  # calls setsid(): stop through the status channel, not SIGTERM


D = Daemon
# One row per daemon binary (postfix-facts §5, §10, §15). ``owner`` only where
# pre-jail init needs nothing root-only (smtpd: see _masterless_units.Instance.root_daemons).
DAEMONS: dict[str, Daemon] = {
    #                    skeleton   flags mode    kind       owner
    "smtpd": D("single", "", POOL, "network", True),
    "qmqpd": D("single", "", POOL, "network", False),
    "pickup": D("trigger", "S", ACCEPT, "queue", True),
    "cleanup": D("single", "U", POOL, "network", False),
    "qmgr": D("trigger", "S", POOL, "queue", True, persistent=True),
    "oqmgr": D("trigger", "S", POOL, "queue", True, persistent=True),
    "nqmgr": D("trigger", "S", POOL, "queue", True, persistent=True),
    "tlsmgr": D("multi", "S", POOL, "queue", False),
    "trivial-rewrite": D("multi", "", POOL, "network", False),
    "bounce": D("single", "U", POOL, "queue", False),
    "verify": D("multi", "S", POOL, "queue", False, retire=True),
    "flush": D("single", "U", ACCEPT, "network", False),
    "proxymap": D("multi", "", POOL, "maps", False),
    "smtp": D("single", "", POOL, "network", False),
    "lmtp": D("single", "", POOL, "network", False),
    "showq": D("single", "", ACCEPT, "queue", True),
    "error": D("single", "", ACCEPT, "queue", True),
    "discard": D("single", "", ACCEPT, "queue", True),
    "local": D("single", "P", POOL, "local", False),
    "virtual": D("single", "P", POOL, "virtual", False),
    "pipe": D("single", "P", POOL, "command", False),
    "spawn": D("single", "P", POOL, "command", False),
    "anvil": D("multi", "S", POOL, "queue", True),
    "scache": D("multi", "S", POOL, "queue", True),
    "postlogd": D("dgram", "S", POOL, "log", False),
    "postscreen": D("event", "S", POOL, "network", False, retire=True),
    "dnsblog": D("single", "U", POOL, "network", False),
    "tlsproxy": D("event", "U", POOL, "network", False),
}
# proxywrite (proxymap -n proxywrite) updates tables and protects them with setsid().
PROXYWRITE = D("multi", "", POOL, "mapwrite", False, retire=True)
# Delivery agents: they run as (or for) the recipient, so they never chroot and need homes.
DELIVERY_KINDS = ("local", "virtual", "command")

SKELETON_TYPES = {
    "single": ("inet", "unix", "pass"),
    "multi": ("inet", "unix", "pass"),
    "event": ("inet", "unix", "pass"),
    "trigger": ("unix", "fifo", "pass"),
    "dgram": ("unix-dgram",),
}


def daemon_name(entry: Entry) -> str:
    return posixpath.basename(entry.parsed.fields["command"])


def is_delivery(name: str) -> bool:
    daemon = DAEMONS.get(name)
    return daemon is not None and daemon.kind in DELIVERY_KINDS


def raw_args(entry: Entry) -> list[str]:
    """Arguments after the command exactly as master passes them (braces stripped per token)."""
    return [_extpar(tok.text) if tok.text.startswith("{") else tok.text for tok in entry.parsed.tokens[8:]]


def option_n(entry: Entry) -> str:
    args = raw_args(entry)
    for pos, arg in enumerate(args[:-1]):
        if arg == "-n":
            return args[pos + 1]
    return ""


def entry_error(entry: Entry, message: str, field_name: Optional[str] = None) -> MasterCfError:
    where = f"'{entry.parsed.fields['service']} {entry.parsed.fields['type']}': "
    return MasterCfError(where + message, path=entry.path, line=entry.first_line, field_name=field_name,
                         value=entry.parsed.fields.get(field_name or "", None))


def daemon_for(entry: Entry) -> Daemon:
    fields_ = entry.parsed.fields
    name = daemon_name(entry)
    daemon = DAEMONS.get(name)
    if daemon is None:
        known = ", ".join(sorted(DAEMONS))
        raise entry_error(entry, f"daemon '{fields_['command']}' is not a Postfix daemon this mapping knows ({known})",
                          "command")
    if name == "proxymap" and "proxywrite" in (fields_["service"], option_n(entry)):
        return PROXYWRITE
    return daemon


def check_entry(entry: Entry, daemon: Daemon, facts: Any) -> None:
    """Refuse what the daemon itself refuses at run time (skeleton type and -l/-z/-u rules)."""
    fields_ = entry.parsed.fields
    kind, name = fields_["type"], daemon_name(entry)
    allowed = SKELETON_TYPES[daemon.skeleton]
    if kind not in allowed:
        raise entry_error(entry, f"{name} ({daemon.skeleton} server) cannot serve type '{kind}'; it serves "
                          + ", ".join(allowed), "type")
    maxproc = maxproc_of(entry, facts)
    if "S" in daemon.flags and maxproc != 1:
        raise entry_error(entry, f"{name} requires a process limit of 1 (maxproc is {fields_['maxproc']})", "maxproc")
    if "U" in daemon.flags and maxproc != 0:
        raise entry_error(entry, f"{name} requires a process limit of 0 (maxproc is {fields_['maxproc']})", "maxproc")
    if "P" in daemon.flags and flag_of(entry, "unpriv", facts):
        raise entry_error(entry, f"{name} requires privileged operation (unpriv must be n)", "unpriv")


# --------------------------------------------------------------------------- listeners


class Listener(Record):
    """Where one entry listens, as systemd socket settings and as master would count it."""

    _fields = ("kind", "addresses", "local_only", "identity", "public")
    kind: str  # ListenStream, ListenDatagram, ListenFIFO
    addresses: list[str]  # systemd address strings
    local_only: bool
    identity: list[tuple[str, ...]]  # ("inet", family, address, port) or ("path", path)
    public: bool = False


def default_resolver(host: str) -> list[str]:
    import socket

    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def default_port_resolver(name: str) -> int:
    import socket

    return socket.getservbyname(name, "tcp")


def split_host_port(service: str) -> tuple[str, str]:
    if service.startswith("["):
        host, _unused, port = service[1:].partition("]:")
        return host, port
    host, sep, port = service.rpartition(":")
    return (host, port) if sep else ("", service)


class Address(Record):
    """A numeric IP address in canonical text form (ipaddress costs start-up time)."""

    _fields = ("version", "text")
    version: int
    text: str

    @property
    def is_loopback(self) -> bool:
        return self.text.startswith("127.") if self.version == 4 else self.text == "::1"

    @property
    def is_wildcard(self) -> bool:
        return self.text in ("0.0.0.0", "::")

    def __str__(self) -> str:
        return self.text


def ip_address(text: str) -> Address:
    """Parse and canonicalise (RFC 5952) without the socket or ipaddress modules' import cost."""
    parts = text.split(".")
    if len(parts) == 4 and all(p.isdigit() and p.isascii() and len(p) <= 3 and int(p) < 256 for p in parts):
        return Address(4, ".".join(str(int(p)) for p in parts))
    groups = _ipv6_groups(text)
    if groups is None:
        raise ValueError(f"'{text}' is not an IP address")
    # Longest run (>1) of zero groups becomes '::'.
    best, run, start = (0, -1), 0, 0
    for pos, group in enumerate(groups + [1]):
        if group == 0:
            start, run = (pos, 1) if run == 0 else (start, run + 1)
        else:
            if run > 1 and run > best[0]:
                best = (run, start)
            run = 0
    hexes = [f"{g:x}" for g in groups]
    if best[1] >= 0:
        first, last = best[1], best[1] + best[0]
        return Address(6, ":".join(hexes[:first]) + "::" + ":".join(hexes[last:]))
    return Address(6, ":".join(hexes))


def _ipv6_groups(text: str) -> Optional[list[int]]:
    if "." in text:  # embedded IPv4 (::ffff:192.0.2.1): rewrite as two hex groups
        head, _unused, v4 = text.rpartition(":")
        octets = v4.split(".")
        if not head or len(octets) != 4 or not all(p.isdigit() and p.isascii() and int(p) < 256 for p in octets):
            return None
        n = [int(p) for p in octets]
        text = f"{head}:{n[0] << 8 | n[1]:x}:{n[2] << 8 | n[3]:x}"
    if text.count("::") > 1 or not all(c in "0123456789abcdefABCDEF:" for c in text):
        return None
    head, sep, tail = text.partition("::")
    left = head.split(":") if head else []
    right = tail.split(":") if tail else []
    if any(not w or len(w) > 4 for w in left + right):
        return None
    missing = 8 - len(left) - len(right)
    if (sep and missing < 1) or (not sep and missing != 0):
        return None
    return [int(w, 16) for w in left] + [0] * missing + [int(w, 16) for w in right]


def _numeric(host: str) -> Optional[Address]:
    try:
        return ip_address(host.strip("[]"))
    except ValueError:
        return None


def _resolve(host: str, resolver: Resolver) -> list[Address]:
    numeric = _numeric(host)
    if numeric is not None:
        return [numeric]
    found = []
    for addr in resolver(host):
        parsed = _numeric(addr.split("%")[0])
        if parsed is not None and parsed not in found:
            found.append(parsed)
    return found


def inet_port(entry: Entry, facts: Any, port_resolver: PortResolver) -> int:
    _unused, port_text = split_host_port(entry.service)
    if port_text.isdigit() and port_text.isascii():
        return int(port_text)
    table = known_ports(facts)
    if port_text in table:
        return table[port_text]
    try:
        return port_resolver(port_text)
    except OSError as exc:
        raise entry_error(entry, f"unknown TCP service '{port_text}' ({exc})", "service") from exc


def inet_listener(entry: Entry, facts: Any, resolver: Resolver = default_resolver,
                  port_resolver: PortResolver = default_port_resolver) -> Listener:
    """master_ent.c: host:port on that host's addresses, else inet_interfaces; inet_protocols filters."""
    service = entry.service
    host, _unused = split_host_port(service)
    families = inet_families(facts)
    port = inet_port(entry, facts, port_resolver)
    addrs: list[Address] = []
    if "%" in host:
        # host_port() accepts a hostname or valid_hostaddr(), which has no scope: master(8) exits with this.
        raise entry_error(entry, f"valid hostname or network address required in \"{service}\" (master(8) takes "
                          "no IPv6 scope in a service name; a scoped address belongs in inet_interfaces)", "service")
    if host:
        try:
            addrs = _resolve(host, resolver)
        except (OSError, UnicodeError) as exc:  # UnicodeError: the idna codec refuses 'a..b'
            raise entry_error(entry, f"cannot resolve host '{host}' ({exc})", "service") from exc
    else:
        interfaces = words(str(facts.inet_interfaces).strip())
        for word in interfaces or ["all"]:
            if word.lower() == "all":
                addrs += [ip_address("0.0.0.0" if v == 4 else "::") for v in families]
            elif word.lower() == "loopback-only":
                addrs += [ip_address("127.0.0.1" if v == 4 else "::1") for v in families]
            elif "%" in word:
                # systemd (252) cannot parse a scope in ListenStream=; dropping it would bind another address.
                raise entry_error(entry, f"inet_interfaces address '{word}' has an IPv6 scope, which the "
                                  "master-less units cannot express; use a global address or classic mode",
                                  "service")
            else:
                try:
                    addrs += _resolve(word, resolver)
                except (OSError, UnicodeError) as exc:
                    raise entry_error(entry, f"cannot resolve inet_interfaces address '{word}' ({exc})",
                                      "service") from exc
    addrs = [a for i, a in enumerate(addrs) if a.version in families and a not in addrs[:i]]
    if not addrs:
        raise entry_error(entry, f"no listen address for '{service}' with inet_interfaces = {facts.inet_interfaces} "
                          f"and inet_protocols = {facts.inet_protocols}", "service")
    strings = [f"[{a}]:{port}" if a.version == 6 else f"{a}:{port}" for a in addrs]
    identity = [("inet", str(a.version), str(a), str(port)) for a in addrs]
    return Listener("ListenStream", strings, all(a.is_loopback for a in addrs), identity)


def local_listener(entry: Entry, facts: Any) -> Listener:
    fields_ = entry.parsed.fields
    public = fields_["private"] == "n"
    path = posixpath.join(str(facts.queue_directory), "public" if public else "private", fields_["service"])
    kind = {"unix-dgram": "ListenDatagram", "fifo": "ListenFIFO"}.get(fields_["type"], "ListenStream")
    # pass services hand remote clients over: never local-only (postfix-facts §1.6).
    return Listener(kind, [path], fields_["type"] != "pass", [("path", path)], public=public)


def listener_of(entry: Entry, facts: Any, resolver: Resolver = default_resolver,
                port_resolver: PortResolver = default_port_resolver) -> Listener:
    if entry.type == "inet":
        return inet_listener(entry, facts, resolver, port_resolver)
    return local_listener(entry, facts)


def overlapping(one: tuple[str, ...], other: tuple[str, ...]) -> bool:
    """Whether two listener identities cannot both bind (a wildcard covers its family's port)."""
    if one == other:
        return True
    if one[0] != "inet" or other[0] != "inet" or one[1] != other[1] or one[3] != other[3]:
        return False
    wildcard = "0.0.0.0" if one[1] == "4" else "::"
    return wildcard in (one[2], other[2])


def check_conflicts(plans: Sequence[tuple[Entry, Listener]]) -> None:
    """Two distinct services on one endpoint: master(8) fails to bind the second one."""
    seen: list[tuple[tuple[str, ...], Entry]] = []
    for entry, listener in plans:
        for ident in listener.identity:
            for key, other in seen:
                if other is not entry and overlapping(ident, key):
                    what = f"port {ident[3]}" if ident[0] == "inet" else ident[1]
                    raise entry_error(entry, f"listens on {what} like the entry at line {other.first_line} "
                                      f"('{other.service} {other.type}'); two listeners cannot share it", "service")
        seen += [(ident, entry) for ident in listener.identity]


# --------------------------------------------------------------------------- argv


def master_head(entry: Entry, facts: Any, *, listen_count: int, local_only: bool) -> list[str]:
    """argv[0] and the options master adds, in master_ent.c's order (-d, -v only for a debugging master)."""
    fields_ = entry.parsed.fields
    command, service = fields_["command"], fields_["service"]
    maxproc = maxproc_of(entry, facts)
    head = [command]
    if maxproc == 1:
        head.append("-l")
    if maxproc == 0:
        head.append("-z")
    if posixpath.basename(command) != service:
        head += ["-n", service]
    head += ["-t", fields_["type"]]
    if flag_of(entry, "unpriv", facts):
        head.append("-u")
    if flag_of(entry, "chroot", facts):
        head.append("-c")
    if not local_only and maxproc > 1:
        head += ["-o", "stress="]
    if listen_count > 1:
        head += ["-s", str(listen_count)]
    return head


def master_argv(entry: Entry, facts: Any, *, listen_count: int = 1, local_only: bool = True) -> list[str]:
    """The argv master(8) builds for this entry (master_ent.c get_master_ent())."""
    return master_head(entry, facts, listen_count=listen_count, local_only=local_only) + raw_args(entry)


# --------------------------------------------------------------------------- one entry, whole


class Service(Record):
    """One entry master(8) runs, with everything the core knows about it."""

    _fields = ("entry", "columns", "daemon", "listener")
    entry: Entry
    columns: Columns
    daemon: Optional[Daemon]  # None: not a Postfix daemon (classic mode runs it anyway)
    listener: Listener


def services(
    items: Union[str, MasterCf, Iterable[Any]], facts: Any, *, path: str = "master.cf",
    resolver: Resolver = default_resolver, port_resolver: PortResolver = default_port_resolver,
) -> tuple[list[Service], list[str]]:
    """What master(8) would run from this master.cf, and the warnings it would log."""
    entries, warnings = running_entries(items, facts, path=path)
    out = []
    for entry in entries:
        name = daemon_name(entry)
        daemon = daemon_for(entry) if name in DAEMONS else None
        out.append(Service(entry=entry, columns=columns(entry, facts), daemon=daemon,
                           listener=listener_of(entry, facts, resolver, port_resolver)))
    check_conflicts([(s.entry, s.listener) for s in out])
    return out, warnings
