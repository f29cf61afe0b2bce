# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""master.cf + main.cf + host facts -> what the chroot jail under queue_directory must hold.

Private to the mailfleet.postfix collection; the API may change without notice.

Pure: the host is described by ``HostFacts`` (libc, library directories and
their NSS/resolver files, which /etc files exist, nsswitch.conf, who owns
/dev/log), gathered on the managed host by ``_classic_jail_sync.probe_host()``. The
same plan is computed by the filter on the controller and by the module on the
host.

A chrooted daemon does its privileged setup (maps, TLS keys and CAfile, the
syslog socket, tzset()) before chroot(queue_directory); what it loads *after*
is looked up inside the jail. That is what is planned here, per daemon:

* host name lookups through glibc NSS (getaddrinfo, getnameinfo): nsswitch.conf,
  the files its ``hosts:`` sources read and their ``libnss_*`` modules;
* DNS queries (res_query): resolv.conf;
* symbolic port names outside known_tcp_ports: services and ``services:``;
* CApath directories, which OpenSSL reads lazily;
* passwd, for ``unix:passwd.byname`` tables not behind ``proxy:``;
* dev/log, when a syslog daemon (not journald) owns it and may be restarted.

Every item names the entries (service/type, master.cf line) and parameters
that need it. Nothing is planned when no entry runs chrooted.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from ._classic_jail_sync import QUEUE_SUBDIRS, JailError
from ._classic_jail_sync import safe_jail_path as _safe_jail_path
from ._postfix_mastercf import Entry, EntryLike, MasterCf, MasterCfError, active_entries
from ._postfix_semantics import DAEMONS, Facts, daemon_name, disabled, flag_of, is_delivery, running_entries

# Built-in defaults (postconf -d, Postfix 3.7) of every parameter read here.
DEFAULTS: dict[str, str] = {
    "compatibility_level": "0",
    "queue_directory": "/var/spool/postfix",
    "mail_owner": "postfix",
    "master_service_disable": "",
    "inet_protocols": "all",
    "maillog_file": "",
    "smtp_host_lookup": "dns",
    "lmtp_host_lookup": "dns",
    "smtp_dns_support_level": "",
    "lmtp_dns_support_level": "",
    "disable_dns_lookups": "no",
    "smtpd_peername_lookup": "yes",
    "smtp_tls_security_level": "",
    "lmtp_tls_security_level": "",
    "smtpd_tls_security_level": "",
    "smtp_use_tls": "no",
    "smtp_enforce_tls": "no",
    "lmtp_use_tls": "no",
    "lmtp_enforce_tls": "no",
    "smtpd_use_tls": "no",
    "smtpd_enforce_tls": "no",
    "smtp_tls_policy_maps": "",
    "lmtp_tls_policy_maps": "",
    "smtp_tls_CApath": "",
    "lmtp_tls_CApath": "",
    "smtpd_tls_CApath": "",
    "tlsproxy_tls_CApath": "$smtpd_tls_CApath",
    "tlsproxy_client_CApath": "$smtp_tls_CApath",
    "tlsproxy_tls_security_level": "$smtpd_tls_security_level",
    "tlsproxy_client_security_level": "$smtp_tls_security_level",
    "local_recipient_maps": "proxy:unix:passwd.byname $alias_maps",
    "alias_maps": "hash:/etc/aliases",
    "non_smtpd_milters": "",
    "smtpd_milters": "",
}
# glibc's nsswitch defaults when /etc/nsswitch.conf is absent (nss/nsswitch.c).
GLIBC_DEFAULT_SOURCES = {"hosts": ("dns", "files")}
# NSS modules that live in libc.so.6 since glibc 2.34 (nss/nss_module.c).
GLIBC_BUILTIN_NSS = ("files", "dns")
# NSS sources that talk to a daemon over a socket the jail does not have.
SOCKET_NSS = {
    "resolve": "systemd-resolved's varlink socket",
    "systemd": "systemd's userdb sockets",
    "mymachines": "systemd-machined",
    "sss": "sssd's pipes",
    "ldap": "nslcd's socket",
    "winbind": "winbindd's pipe",
    "mdns": "avahi-daemon's socket",
    "mdns4": "avahi-daemon's socket",
    "mdns6": "avahi-daemon's socket",
    "mdns_minimal": "avahi-daemon's socket",
    "mdns4_minimal": "avahi-daemon's socket",
    "mdns6_minimal": "avahi-daemon's socket",
    "db": "Berkeley DB files under /var/lib/misc",
}
# Where jail items may live (relative to queue_directory); CApath directories are checked separately.
JAIL_TOPS = frozenset(("etc", "lib", "lib32", "lib64", "libx32", "usr", "dev"))
# Secrets no chrooted daemon reads; a copy would make them readable to whoever breaks into the jail.
# (The chroot module also refuses any extra file that is not world-readable, unless told otherwise.)
NEVER_EXTRA = frozenset(("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers",
                         "/etc/master.passwd", "/etc/spwd.db"))
NEVER_EXTRA_UNDER = ("/etc/ssl/private/", "/etc/sudoers.d/", "/etc/ssh/ssh_host_")

HOSTS, DNS, SERVICES, TLS_CLIENT, TLS_SERVER, PASSWD, TIME, SYSLOG, UNWIND = (
    "hosts", "dns", "services", "tls-client", "tls-server", "passwd", "time", "syslog", "unwind",
)
ALL_NEEDS = (HOSTS, DNS, SERVICES, TLS_CLIENT, TLS_SERVER, PASSWD, TIME)
# What each daemon looks up after chroot (beyond syslog and the unwinder, which every one gets).
# Daemons not listed are unknown: they are assumed to need everything.
DAEMON_NEEDS: dict[str, tuple[str, ...]] = {
    "smtp": (HOSTS, DNS, SERVICES, TLS_CLIENT),
    "lmtp": (HOSTS, DNS, SERVICES, TLS_CLIENT),
    "smtpd": (HOSTS, DNS, SERVICES, TLS_SERVER, PASSWD, TIME),
    "qmqpd": (HOSTS, TIME),
    "dnsblog": (DNS,),
    "tlsproxy": (TLS_SERVER, TLS_CLIENT),
    "cleanup": (TIME,),
    "bounce": (TIME,),
    "postscreen": (),
    "pickup": (),
    "qmgr": (),
    "nqmgr": (),
    "oqmgr": (),
    "tlsmgr": (),
    "trivial-rewrite": (),
    "verify": (),
    "flush": (),
    "showq": (),
    "error": (),
    "discard": (),
    "anvil": (),
    "scache": (),
    "postlogd": (),
    "proxymap": ALL_NEEDS,
}
# master(5): "Chroot should not be used with the local(8), pipe(8), spawn(8), and virtual(8) daemons."
NEVER_CHROOT = tuple(name for name in DAEMONS if is_delivery(name))  # master(5): no chroot for these


class ChrootPlanError(ValueError):
    """The jail cannot be planned (a library this libc needs cannot be located, bad input)."""


# --------------------------------------------------------------------------- host facts


@dataclass(frozen=True)
class HostFacts:
    """What the planner needs to know about the managed host."""

    system: str = "Linux"
    libc: str = "glibc"  # glibc, musl, or '' when unknown
    libc_version: str = "2.36"
    # Library directories in the dynamic loader's search order, each with the file names of
    # interest in it (libnss_*, libresolv*, libgcc_s*).
    lib_dirs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    files: frozenset[str] = frozenset()  # host files that exist (absolute paths)
    nsswitch: Optional[str] = None  # content of /etc/nsswitch.conf; None when absent
    syslog: str = "journald"  # who provides /dev/log: journald, socket (rsyslog & co), none
    needed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # library -> DT_NEEDED

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostFacts:
        known = {"system", "libc", "libc_version", "lib_dirs", "files", "nsswitch", "syslog", "needed"}
        unknown = set(data) - known
        if unknown:
            raise ChrootPlanError(f"unknown host facts: {', '.join(sorted(unknown))}; expected {', '.join(sorted(known))}")
        values: dict[str, Any] = {k: v for k, v in data.items() if k not in ("lib_dirs", "files", "needed")}
        for key, kinds, expected in (("lib_dirs", (Mapping, list, tuple), "a mapping of directory to file names"),
                                     ("files", (list, tuple, set, frozenset), "a list of absolute paths"),
                                     ("needed", (Mapping,), "a mapping of library to the libraries it needs")):
            if data.get(key) is not None and not isinstance(data[key], kinds):
                raise ChrootPlanError(f"host fact '{key}' is a {type(data[key]).__name__}; expected {expected}")
        lib_dirs = data.get("lib_dirs") or {}
        if isinstance(lib_dirs, Mapping):
            lib_dirs = list(lib_dirs.items())
        values["lib_dirs"] = tuple((str(d), tuple(str(n) for n in names)) for d, names in lib_dirs)
        values["files"] = frozenset(str(f) for f in data.get("files") or ())
        values["needed"] = {str(k): tuple(str(x) for x in v) for k, v in (data.get("needed") or {}).items()}
        for key in ("system", "libc", "libc_version", "syslog"):
            if key in values:
                values[key] = str(values[key])
        if values.get("syslog", "journald") not in ("journald", "socket", "none"):
            raise ChrootPlanError(f"host fact 'syslog' is '{values['syslog']}'; expected journald, socket or none")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "libc": self.libc,
            "libc_version": self.libc_version,
            "lib_dirs": {d: list(names) for d, names in self.lib_dirs},
            "files": sorted(self.files),
            "nsswitch": self.nsswitch,
            "syslog": self.syslog,
            "needed": {k: list(v) for k, v in self.needed.items()},
        }

    def glibc_at_least(self, major: int, minor: int) -> bool:
        match = re.match(r"(\d+)\.(\d+)", self.libc_version or "")
        if self.libc != "glibc" or match is None:
            return False
        return (int(match[1]), int(match[2])) >= (major, minor)

    def find_library(self, name: str) -> Optional[str]:
        for directory, names in self.lib_dirs:
            if name in names:
                return posixpath.join(directory, name)
        return None


_DEBIAN12_LIBS = (
    "libgcc_s.so.1", "libnss_compat.so.2", "libnss_dns.so.2", "libnss_files.so.2", "libnss_hesiod.so.2",
    "libresolv.so.2",
)
# Debian 12 (bookworm) on amd64 with its default nsswitch.conf: the filter's default host.
DEBIAN12_AMD64 = HostFacts(
    system="Linux",
    libc="glibc",
    libc_version="2.36",
    lib_dirs=(("/lib/x86_64-linux-gnu", _DEBIAN12_LIBS), ("/usr/lib/x86_64-linux-gnu", ())),
    files=frozenset((
        "/etc/resolv.conf", "/etc/hosts", "/etc/host.conf", "/etc/nsswitch.conf", "/etc/services",
        "/etc/localtime", "/etc/passwd", "/etc/ssl/certs",
    )),
    nsswitch=(
        "passwd: files\ngroup: files\nshadow: files\ngshadow: files\n\nhosts: files dns\nnetworks: files\n\n"
        "protocols: db files\nservices: db files\nethers: db files\nrpc: db files\n\nnetgroup: nis\n"
    ),
    syslog="journald",
)


def nss_sources(nsswitch: Optional[str], database: str) -> tuple[str, ...]:
    """Sources of one database, in order, without [action] groups."""
    if nsswitch is None:
        return GLIBC_DEFAULT_SOURCES.get(database, ("files",))
    found: Optional[str] = None
    for line in nsswitch.splitlines():
        line = line.split("#", 1)[0].strip()
        name, sep, rest = line.partition(":")
        if sep and name.strip() == database:
            found = rest  # the last definition wins, as in glibc
    if found is None:
        return GLIBC_DEFAULT_SOURCES.get(database, ("files",))
    text = re.sub(r"\[[^\]]*\]", " ", found)
    return tuple(word for word in text.split() if word)


# --------------------------------------------------------------------------- plan data


@dataclass(frozen=True)
class Reason:
    """Why one item is in the jail: which entry needs it, through which parameter."""

    text: str
    entry: str = ""  # service/type
    line: int = 0
    command: str = ""
    parameter: str = ""

    def __str__(self) -> str:
        if not self.entry:
            return self.text
        return f"{self.entry} (master.cf line {self.line}, {self.command}): {self.text}"

    def to_dict(self) -> dict[str, Any]:
        return {"entry": self.entry, "line": self.line, "command": self.command, "parameter": self.parameter,
                "text": self.text, "summary": str(self)}


FILE, PASSWD_FILE, CERTS, SOCKET = "file", "passwd", "certs", "socket"
KINDS = (FILE, PASSWD_FILE, CERTS, SOCKET)


@dataclass
class Item:
    """One thing in the jail. ``path`` is relative to queue_directory."""

    path: str
    kind: str  # file: copy of source; passwd: sanitized copy; certs: *.pem + hash links; socket: provided by syslog
    source: str
    reasons: list[Reason] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "source": self.source,
                "reasons": [r.to_dict() for r in self.reasons]}


@dataclass(frozen=True)
class Chrooted:
    """An active entry that master(8) runs chrooted."""

    entry: str
    line: int
    command: str
    chroot: str  # the field as written
    daemon: str  # command basename

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Plan:
    queue_directory: str
    chrooted: list[Chrooted] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # the jail will differ from the host: act on these
    notes: list[str] = field(default_factory=list)  # informational (sources the host skips as well)

    def item(self, path: str) -> Optional[Item]:
        return next((i for i in self.items if i.path == path), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue_directory": self.queue_directory,
            "chrooted": [c.to_dict() for c in self.chrooted],
            "contents": [i.to_dict() for i in self.items],
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- parameters


_REF_RE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)(?:([?:])([^}]*))?\}|\(([A-Za-z0-9_]+)\)|([A-Za-z0-9_]+))")


class Params:
    """Effective parameter values of one entry: -o overrides, then main.cf, then built-in defaults."""

    def __init__(self, main: Mapping[str, str], overrides: Optional[Mapping[str, str]] = None,
                 service: str = "") -> None:
        self.main = main
        self.overrides = dict(overrides or {})
        self.service = service

    def raw(self, name: str) -> Optional[str]:
        for layer in (self.overrides, self.main, DEFAULTS):
            if name in layer:
                return str(layer[name])
        return None

    def origin(self, name: str) -> str:
        """Where a value comes from, for reasons: '-o name', 'main.cf' or 'default'."""
        if name in self.overrides:
            return f"-o {name}"
        return "main.cf" if name in self.main else "default"

    def get(self, name: str) -> str:
        return self.expand(name)[0]

    def expand(self, name: str) -> tuple[str, list[str]]:
        """(value, names that could not be expanded)."""
        unresolved: list[str] = []
        value = self._expand(self.raw(name) or "", unresolved, depth=0)
        return value, unresolved

    def _expand(self, text: str, unresolved: list[str], *, depth: int) -> str:
        if depth > 20 or "$" not in text:
            return text

        def sub(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(4) or match.group(5)
            if name == "service_name" and self.service:
                value: Optional[str] = self.service
            else:
                value = self.raw(name)
            if match.group(2):  # ${name?text} / ${name:text}
                present = bool(value)
                chosen = match.group(3) if present == (match.group(2) == "?") else ""
                return self._expand(chosen, unresolved, depth=depth + 1)
            if value is None:
                unresolved.append(name)
                return match.group(0)
            return self._expand(value, unresolved, depth=depth + 1)

        return _REF_RE.sub(sub, text)

    def yes(self, name: str) -> bool:
        return self.get(name).strip().lower() in ("yes", "true", "y", "1", "on")


def facts_of(main: Mapping[str, str]) -> Facts:
    """master(8)'s facts from main.cf values ($name references expanded, Postfix's defaults)."""
    params = Params(main)
    return Facts.from_mapping({name: params.get(name) for name in Facts._fields if params.raw(name) is not None})


def chroot_of(entry: Entry, main: Mapping[str, str]) -> bool:
    """The chroot column as master(8) reads it: '-' is y below compatibility_level 1."""
    return flag_of(entry, "chroot", facts_of(main))


def service_disabled(entry: Entry, main: Mapping[str, str]) -> bool:
    """master_service_disable, and inet entries when inet_protocols is empty."""
    return disabled(entry, facts_of(main))


def running(items: MasterLike, main: Mapping[str, str], *, path: str = "master.cf") -> tuple[list[Entry], list[str]]:
    """The entries master(8) runs (enabled, not disabled, the last of duplicates) and its warnings."""
    try:
        return running_entries(as_entries(items, path=path), facts_of(main), path=path)
    except MasterCfError as exc:
        raise ChrootPlanError(str(exc)) from exc


def daemon_of(entry: Entry) -> str:
    return daemon_name(entry)


MasterLike = Union[str, MasterCf, Iterable[EntryLike]]


def as_entries(items: MasterLike, *, path: str = "master.cf") -> list[Entry]:
    """Active entries from master.cf text, a parsed document, or master_cf_parse dicts."""
    return active_entries(items, path=path, error=ChrootPlanError)


# --------------------------------------------------------------------------- planning


class _Builder:
    def __init__(self, host: HostFacts, queue_directory: str) -> None:
        self.host = host
        self.queue_directory = queue_directory
        self.items: dict[str, Item] = {}
        self.warnings: list[str] = []
        self.notes: list[str] = []

    def add(self, path: str, kind: str, source: str, reason: Reason) -> None:
        item = self.items.get(path)
        if item is None:
            item = self.items[path] = Item(path, kind, source)
        if reason not in item.reasons:
            item.reasons.append(reason)

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def etc(self, name: str, reason: Reason) -> None:
        """An /etc file, copied when the host has it (when it does not, neither does the host's lookup)."""
        source = "/etc/" + name
        if source in self.host.files:
            self.add("etc/" + name, FILE, source, reason)

    def library(self, name: str, reason: Reason, *, required: bool, why_missing: str = "") -> None:
        found = self.host.find_library(name)
        if found is None:
            if required:
                searched = ", ".join(entry[0] for entry in self.host.lib_dirs) or "(no library directories known)"
                raise ChrootPlanError(
                    f"cannot locate {name} for {self.host.libc or 'this libc'} {self.host.libc_version} "
                    f"(searched {searched}); the jail needs it: {reason}"
                )
            if why_missing:
                self.note(why_missing)
            return
        self.add(_jail_path(found), FILE, found, reason)
        for dep in self.host.needed.get(name, ()):
            if dep.startswith(("libc.so", "ld-linux", "ld64.so", "ld-musl")):
                continue  # always mapped before chroot
            self.library(dep, Reason(f"needed by {name}", reason.entry, reason.line, reason.command,
                                     reason.parameter), required=False,
                         why_missing=f"{name} needs {dep}, which was not found in the library directories")


def _jail_path(host_path: str) -> str:
    """Library inside the jail at the path the dynamic loader searches: /lib/<multiarch>/x -> lib/<multiarch>/x."""
    path = posixpath.normpath(host_path).lstrip("/")
    return path


def plan_jail(
    master: MasterLike,
    main: Optional[Mapping[str, Any]] = None,
    host: Optional[HostFacts] = None,
    *,
    extra_files: Sequence[str] = (),
    path: str = "master.cf",
) -> Plan:
    """The jail for one instance; empty when no active entry runs chrooted."""
    params = {str(k): "" if v is None else str(v) for k, v in (main or {}).items()}
    host = host or DEBIAN12_AMD64
    facts = facts_of(params)  # once: Params expands every reference
    entries, duplicate_warnings = running(master, params, path=path)
    queue_directory = Params(params).get("queue_directory")
    plan = Plan(queue_directory=queue_directory)
    builder = _Builder(host, queue_directory)
    for warning in duplicate_warnings:
        builder.warn(warning)
    for entry in entries:
        if not flag_of(entry, "chroot", facts):
            continue
        daemon = daemon_of(entry)
        plan.chrooted.append(Chrooted(f"{entry.service}/{entry.type}", entry.first_line,
                                      entry.parsed.fields["command"], entry.parsed.fields["chroot"], daemon))
        _plan_entry(builder, entry, Params(params, entry.options, entry.service))
    if plan.chrooted:
        _plan_common(builder, plan, Params(params), extra_files)
    if host.system != "Linux" and plan.chrooted:
        builder.warn(f"{host.system}: NSS and resolver libraries are only planned for Linux; "
                     "the jail's /etc files are still listed")
    plan.items = sorted(builder.items.values(), key=lambda i: i.path)
    plan.warnings = builder.warnings
    plan.notes = builder.notes
    return plan


def _reason(entry: Entry, text: str, parameter: str = "") -> Reason:
    return Reason(text, f"{entry.service}/{entry.type}", entry.first_line, entry.parsed.fields["command"], parameter)


_DECIDED_BY_PARAMETERS = ("smtp", "lmtp", "smtpd", "qmqpd", "dnsblog")


def _needs(entry: Entry, daemon: str, params: Params, builder: _Builder) -> list[tuple[str, str, str]]:
    """(need, parameter, why) for one chrooted entry."""
    if daemon in NEVER_CHROOT:
        builder.warn(f"{entry.service}/{entry.type} (master.cf line {entry.first_line}): {daemon} runs chrooted; "
                     f"master(5) says chroot should not be used with local, pipe, spawn and virtual")
    if daemon == "proxymap":
        builder.warn(f"{entry.service}/{entry.type} (master.cf line {entry.first_line}): proxymap runs chrooted; "
                     "tables it opens after chroot must then exist inside the jail")
    known = DAEMON_NEEDS.get(daemon)
    if known is None and daemon not in NEVER_CHROOT:
        return [(n, "", f"unknown daemon '{daemon}': assumed to need {n} lookups") for n in ALL_NEEDS]
    out: list[tuple[str, str, str]] = []
    if daemon in ("smtp", "lmtp"):
        out.extend(_client_lookups(daemon, params))
        out.append((SERVICES, "", "resolves symbolic next-hop ports outside known_tcp_ports"))
    elif daemon == "smtpd":
        if params.yes("smtpd_peername_lookup"):
            out.append((HOSTS, "smtpd_peername_lookup", "looks up client host names (getnameinfo/getaddrinfo)"))
        out.append((DNS, "", "DNS queries of access restrictions (reject_unknown_*, DNSBLs, check_*_mx_access)"))
        out.append((SERVICES, "", "resolves symbolic ports of policy servers and milters"))
    elif daemon == "qmqpd":
        out.append((HOSTS, "", "looks up client host names"))
    elif daemon == "dnsblog":
        out.append((DNS, "", "queries DNS blocklists for postscreen"))
    for need in ALL_NEEDS if known is None else known:
        if need in (HOSTS, DNS, SERVICES) and daemon in _DECIDED_BY_PARAMETERS:
            continue  # handled above with the parameter that decides
        out.append((need, "", ""))
    if daemon == "cleanup":
        out.extend(_milter_lookups(params, "non_smtpd_milters"))
    return out


def _client_lookups(daemon: str, params: Params) -> list[tuple[str, str, str]]:
    lookup_param = f"{daemon}_host_lookup"
    dns_param = f"{daemon}_dns_support_level"
    dns_off = params.get(dns_param).strip() == "disabled" or (
        not params.get(dns_param).strip() and params.yes("disable_dns_lookups"))
    methods = set(re.split(r"[\s,]+", params.get(lookup_param).strip().lower())) - {""}
    out: list[tuple[str, str, str]] = []
    if dns_off:
        param = dns_param if params.get(dns_param).strip() else "disable_dns_lookups"
        out.append((HOSTS, param, "DNS is disabled, so next hops are resolved with getaddrinfo"))
        return out
    if "dns" in methods or not methods:
        value = params.get(lookup_param).strip() or "dns"
        out.append((DNS, lookup_param, f"resolves next hops with DNS queries ({lookup_param} = {value})"))
    if "native" in methods:
        out.append((HOSTS, lookup_param, f"resolves next hops with getaddrinfo ({lookup_param} includes native)"))
    return out


def _milter_lookups(params: Params, name: str) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for host in _inet_hosts(params.get(name)):
        why = f"connects to milter inet:{host} after chroot"
        out.append((HOSTS, name, why))
        out.append((SERVICES, name, why))
    return out


def _inet_hosts(value: str) -> list[str]:
    """Host names (not addresses) in inet:host:port endpoints."""
    hosts: list[str] = []
    for match in re.finditer(r"\binet:(\[[^\]]*\]|[^\s,:{}]+):", value):
        host = match.group(1)
        if host.startswith("[") or re.match(r"^[0-9.]+$", host):
            continue
        if host not in hosts:
            hosts.append(host)
    return hosts


def _plan_entry(builder: _Builder, entry: Entry, params: Params) -> None:
    daemon = daemon_of(entry)
    host = builder.host
    for need, param, why in _needs(entry, daemon, params, builder):
        if need == HOSTS:
            _plan_nss(builder, "hosts", _reason(entry, why or "looks up host names", param))
        elif need == DNS:
            builder.etc("resolv.conf", _reason(entry, why or "sends DNS queries", param))
        elif need == SERVICES:
            _plan_nss(builder, "services", _reason(entry, why or "looks up port names", param))
        elif need == TIME:
            builder.etc("localtime", _reason(
                entry, why or "writes dates into messages; the zone is loaded before chroot, and the copy keeps a "
                              "later reload inside the jail on the host's zone"))
        elif need in (TLS_CLIENT, TLS_SERVER):
            _plan_capath(builder, entry, params, daemon, need)
        elif need == PASSWD:
            _plan_passwd(builder, entry, params, daemon)
    if host.system == "Linux" and host.libc == "glibc":
        builder.library("libgcc_s.so.1", _reason(
            entry, "glibc loads it on demand to unwind threads (pthread_cancel, pthread_exit); a daemon not "
                   "already linked against it aborts without it"), required=True)


# The /etc file a database's 'files' source reads (passwd is written sanitized, see _plan_passwd).
_NSS_FILES = {"hosts": "hosts", "services": "services"}


def _plan_nss(builder: _Builder, database: str, reason: Reason) -> None:
    host = builder.host
    files = _NSS_FILES.get(database)
    if host.libc == "musl" or host.system != "Linux":
        # musl (and the BSDs' files backends) read these files directly, no modules.
        if files:
            builder.etc(files, reason)
        if database == "hosts":
            builder.etc("resolv.conf", reason)
        return
    sources = nss_sources(host.nsswitch, database)
    if host.nsswitch is not None:
        builder.etc("nsswitch.conf", Reason(f"{database}: {' '.join(sources)} — {reason.text}", reason.entry,
                                            reason.line, reason.command, reason.parameter))
    for source in sources:
        via = Reason(f"nsswitch.conf '{database}: {' '.join(sources)}' — {reason.text}", reason.entry,
                     reason.line, reason.command, reason.parameter)
        if source == "files" and files:
            builder.etc(files, via)
        elif source == "dns" and database == "hosts":
            builder.etc("resolv.conf", via)
        if database == "hosts" and source.startswith("mdns"):
            builder.etc("nss_mdns.config", via)
        lib = f"libnss_{source}.so.2"
        builtin = source in GLIBC_BUILTIN_NSS and host.glibc_at_least(2, 34)
        if builtin:
            via = Reason(via.text + " (built into glibc >= 2.34; the host's module file is copied as well)",
                         via.entry, via.line, via.command, via.parameter)
        if host.find_library(lib) is None and not builtin and source not in GLIBC_BUILTIN_NSS:
            builder.note(f"nsswitch.conf '{database}: {source}': {lib} is not installed; glibc skips that "
                         "source on the host and in the jail")
            continue
        if source in SOCKET_NSS:
            builder.warn(f"nsswitch.conf '{database}: {source}' needs {SOCKET_NSS[source]}, which the jail "
                         "does not have; chrooted daemons skip that source")
        builder.library(lib, via, required=not builtin)
        if source == "dns":
            builder.library("libresolv.so.2", Reason(
                f"resolver library of libnss_dns — {reason.text}", reason.entry, reason.line, reason.command,
                reason.parameter), required=not builtin)
    if database == "hosts":
        builder.etc("host.conf", reason)


def _tls_enabled(params: Params, prefix: str) -> tuple[bool, str]:
    if prefix == "tlsproxy_client":
        level_param = "tlsproxy_client_security_level"
    elif prefix == "tlsproxy":
        level_param = "tlsproxy_tls_security_level"
    else:
        level_param = f"{prefix}_tls_security_level"
    level = params.get(level_param).strip().lower()
    if level:
        return level != "none", level_param
    legacy = prefix.replace("tlsproxy_client", "smtp").replace("tlsproxy", "smtpd")
    for name in (f"{legacy}_enforce_tls", f"{legacy}_use_tls"):
        if params.yes(name):
            return True, name
    if legacy in ("smtp", "lmtp") and params.get(f"{legacy}_tls_policy_maps").strip():
        return True, f"{legacy}_tls_policy_maps"
    return False, level_param


def _plan_capath(builder: _Builder, entry: Entry, params: Params, daemon: str, need: str) -> None:
    if daemon == "tlsproxy":
        prefix, capath_param = ("tlsproxy", "tlsproxy_tls_CApath") if need == TLS_SERVER else (
            "tlsproxy_client", "tlsproxy_client_CApath")
    elif need == TLS_SERVER:
        prefix, capath_param = "smtpd", "smtpd_tls_CApath"
    else:
        prefix = "lmtp" if daemon == "lmtp" else "smtp"
        capath_param = f"{prefix}_tls_CApath"
    capath, unresolved = params.expand(capath_param)
    capath = capath.strip()
    if not capath:
        return
    enabled, level_param = _tls_enabled(params, prefix)
    if not enabled:
        return
    where = f"{entry.service}/{entry.type} (master.cf line {entry.first_line})"
    if unresolved:
        builder.warn(f"{where}: {capath_param} = {capath} refers to unknown parameters "
                     f"({', '.join(unresolved)}); its CA directory is not planned")
        return
    if not capath.startswith("/"):
        builder.warn(f"{where}: {capath_param} = {capath} is not absolute; its CA directory is not planned")
        return
    capath = posixpath.normpath(capath)
    queue = posixpath.normpath(builder.queue_directory)
    if capath == queue or capath.startswith(queue + "/"):
        return  # already inside the jail
    if capath not in builder.host.files:
        builder.warn(f"{where}: {capath_param} = {capath} does not exist on the host")
        return
    jail = capath.lstrip("/")
    if jail.split("/", 1)[0] in QUEUE_SUBDIRS:
        builder.warn(f"{where}: {capath_param} = {capath} would land in the queue subdirectory "
                     f"{jail.split('/', 1)[0]}/ inside the jail; not planned")
        return
    builder.add(jail, CERTS, capath, _reason(
        entry, f"OpenSSL reads CApath lazily, after chroot ({capath_param} from "
               f"{params.origin(capath_param)}, TLS on through {level_param})", capath_param))


def _plan_passwd(builder: _Builder, entry: Entry, params: Params, daemon: str) -> None:
    value = params.get("local_recipient_maps")
    tables = re.split(r"[\s,]+", value)
    if "unix:passwd.byname" not in tables:
        return
    reason = _reason(entry, f"local_recipient_maps ({params.origin('local_recipient_maps')}) reads "
                            "unix:passwd.byname without proxy: after chroot", "local_recipient_maps")
    if "/etc/passwd" in builder.host.files:
        builder.add("etc/passwd", PASSWD_FILE, "/etc/passwd", reason)
    _plan_nss(builder, "passwd", reason)


def _plan_common(builder: _Builder, plan: Plan, params: Params, extra_files: Sequence[str]) -> None:
    maillog = params.get("maillog_file").strip()
    postlog = any(c.daemon == "postlogd" for c in plan.chrooted)
    if maillog and not postlog:
        builder.warn(f"maillog_file = {maillog}, but chrooted daemons can only log through the postlog service "
                     "(public/postlog, inside the jail): make sure master.cf has 'postlog unix-dgram ... postlogd'")
    if not maillog and builder.host.syslog == "socket":
        for chrooted in plan.chrooted:
            builder.add("dev/log", SOCKET, "syslog", Reason(
                "reconnects to syslog from inside the jail after the syslog daemon restarts; the syslog daemon "
                "must listen there too (rsyslog: $AddUnixListenSocket)", chrooted.entry, chrooted.line,
                chrooted.command))
    for extra in extra_files:
        if not isinstance(extra, str) or "\0" in extra or "\n" in extra:
            raise ChrootPlanError(f"extra file {ascii(extra)} must be an absolute path to a file")
        source = posixpath.normpath(str(extra))
        if source in NEVER_EXTRA or source.startswith(NEVER_EXTRA_UNDER) and not source.endswith(".pub"):
            raise ChrootPlanError(f"extra file '{extra}' holds secrets no chrooted Postfix daemon reads; it is "
                                  "never copied into the jail")
        if not source.startswith("/") or source == "/":
            raise ChrootPlanError(f"extra file '{extra}' must be an absolute path to a file")
        jail = source.lstrip("/")
        if jail.split("/", 1)[0] in QUEUE_SUBDIRS or jail.split("/", 1)[0] not in JAIL_TOPS:
            raise ChrootPlanError(f"extra file '{extra}' would land in {jail.split('/', 1)[0]}/ inside the jail; "
                                  f"allowed are {', '.join(sorted(JAIL_TOPS))}")
        if source in builder.host.files:
            builder.add(jail, FILE, source, Reason("listed in extra_files"))
        else:
            builder.warn(f"extra file {source} does not exist on the host")


def safe_jail_path(path: str) -> str:
    """Normalize a jail-relative path; refuse escapes and queue subdirectories."""
    try:
        return _safe_jail_path(path)
    except JailError as exc:
        raise ChrootPlanError(str(exc)) from exc
