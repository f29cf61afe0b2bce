# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""master.cf + main.cf -> one hardened systemd unit per instance for classic (master) mode.

Private to the mailfleet.postfix collection; the API may change without notice.

master(8) keeps supervising the daemons; systemd only starts one master per
instance, in a cgroup of its own (``postfix -c DIR start``, never postmulti's
wrapper, which would start every instance inside one unit). ``postfix check``
runs before every start, reload is ``postfix reload``.

Hardening is computed from what the instance's master.cf runs, one rule per
directive (``RULES`` below, each with the reason that decides it):

* an instance without local, virtual, pipe and spawn entries (an "edge") never
  executes users' programs or writes outside its queue and data directories: it
  gets NoNewPrivileges, RestrictSUIDSGID, ProtectHome, ProtectSystem=strict,
  PrivateTmp, a system call filter and no memory that is writable and executable;
* local(8) runs users' .forward commands (which may be set-gid, e.g. sendmail ->
  postdrop) and writes to their homes and the mail spool; pipe(8)/spawn(8) run
  arbitrary programs as other users: those instances keep set-uid/set-gid
  execution, /home and a shared /tmp, and what they still get cannot break a
  delivery;
* virtual(8) writes below virtual_mailbox_base as the virtual uid and executes
  nothing: NoNewPrivileges stays, the mailbox base is made writable.

The capability bounding set holds what master and its root-started children
need: SETUID/SETGID (-u), KILL (master signals children running as mail_owner),
DAC_OVERRIDE (pre-jail connects into private/ and public/ as root), CHOWN/FOWNER
(``postfix check`` creates missing queue directories), NET_BIND_SERVICE for
inet listeners below 1024, SYS_CHROOT when an entry runs chrooted, plus what
delivery as the recipient needs.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from ._chroot import MasterLike, Params, as_entries, daemon_of, facts_of, running
from ._mastercf import Entry, MasterCfError
from ._semantics import DAEMONS, DEFAULT_KNOWN_TCP_PORTS, Facts, default_port_resolver, flag_of, inet_port, is_delivery
from ._units import escape, exec_quote, render_unit, short_name, utf8_only

# Every Postfix daemon probes AF_INET6; getifaddrs() needs netlink (inet_addr_local).
POSTFIX_FAMILIES = "AF_UNIX AF_INET AF_INET6 AF_NETLINK"
BASE_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_CHOWN", "CAP_FOWNER")
# Delivery as the recipient: mailbox creation and ownership, set-gid bits, spool locks.
DELIVERY_CAPS = ("CAP_DAC_READ_SEARCH", "CAP_FSETID")
UNIT_SUFFIX = "-master.service"
JAIL_SYNC = "chroot-sync"


@dataclass(frozen=True)
class ClassicInstance:
    """main.cf facts of one instance (postconf -x) and install paths."""

    name: str = "-"  # multi_instance_name; '-' is the primary instance
    config_directory: str = "/etc/postfix"
    queue_directory: str = "/var/spool/postfix"
    data_directory: str = "/var/lib/postfix"
    command_directory: str = "/usr/sbin"
    mail_spool_directory: str = "/var/mail"
    virtual_mailbox_base: str = ""
    maillog_file: str = ""
    known_tcp_ports: str = DEFAULT_KNOWN_TCP_PORTS
    libexec_directory: str = "/usr/libexec/mailfleet-postfix"
    python: str = "/usr/bin/python3"
    # The distribution's units that run master(8) for this instance, space-separated (_generator.master_units).
    distribution_unit: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **extra: Any) -> ClassicInstance:
        known = set(cls.__dataclass_fields__)
        values: dict[str, str] = {}
        for key, value in params.items():
            if key == "multi_instance_name":
                values["name"] = str(value).strip() or "-"
            elif key in known and value is not None:
                values[key] = str(value).strip()
        values.update({k: str(v) for k, v in extra.items() if v is not None})
        return cls(**values)

    @property
    def short_name(self) -> str:
        """'default' for the primary, 'edge' for postfix-edge (as the master-less units name it)."""
        return short_name(self.name)

    @property
    def prefix(self) -> str:
        # Escaped like the master-less units, so Conflicts= names the same target.
        return "postfix-" + escape(self.short_name)

    @property
    def unit(self) -> str:
        return self.prefix + UNIT_SUFFIX

    @property
    def distribution_units(self) -> list[str]:
        """The distribution's units for this instance (Debian 12: postfix@-.service for the primary)."""
        return self.distribution_unit.split() or [f"postfix@{'-' if self.name in ('', '-') else self.name}.service"]

    @property
    def postfix(self) -> str:
        return posixpath.join(self.command_directory, "postfix")


@dataclass(frozen=True)
class Decision:
    """One hardening directive and why it has this value."""

    key: str
    value: str
    why: str


@dataclass
class Services:
    """What the instance's active entries run, for the hardening rules."""

    delivery: dict[str, list[str]] = field(default_factory=dict)  # daemon -> ["local/unix line 24", ...]
    unknown: list[str] = field(default_factory=list)
    chrooted: list[str] = field(default_factory=list)
    low_ports: list[str] = field(default_factory=list)

    @property
    def runs_programs(self) -> list[str]:
        """Entries that execute programs as other users (they may be set-uid/set-gid)."""
        return [where for d in ("local", "pipe", "spawn") for where in self.delivery.get(d, [])] + self.unknown

    @property
    def arbitrary(self) -> list[str]:
        """Entries that run arbitrary programs (not just users' .forward commands)."""
        return [where for d in ("pipe", "spawn") for where in self.delivery.get(d, [])] + self.unknown


@dataclass
class ClassicUnits:
    instance: ClassicInstance
    units: dict[str, str] = field(default_factory=dict)
    masks: list[str] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    services: Services = field(default_factory=Services)
    kind: str = "edge"  # edge, virtual, delivery

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.instance.unit,
            "kind": self.kind,
            "units": dict(self.units),
            "masks": list(self.masks),
            "hardening": [{"directive": d.key, "value": d.value, "why": d.why} for d in self.decisions],
        }


def _where(entry: Entry) -> str:
    return f"{entry.service}/{entry.type} line {entry.first_line}"


def _port(entry: Entry, facts: Facts) -> Optional[int]:
    try:
        return inet_port(entry, facts, default_port_resolver)
    except MasterCfError:
        return None


def survey(entries: Sequence[Entry], params: Mapping[str, str], known_ports: str = "") -> Services:
    """What the instance's master(8) runs: delivery agents, unknown programs, chroot, privileged ports."""
    facts = facts_of(params)
    if known_ports:
        facts = Facts(**{**facts.to_dict(), "known_tcp_ports": known_ports})
    out = Services()
    running_now, _warnings = running(list(entries), params)
    for entry in running_now:
        daemon = daemon_of(entry)
        if is_delivery(daemon):
            out.delivery.setdefault(daemon, []).append(_where(entry))
        elif daemon not in DAEMONS:
            out.unknown.append(f"{_where(entry)} ({entry.parsed.fields['command']})")
        if flag_of(entry, "chroot", facts):
            out.chrooted.append(_where(entry))
        if entry.type == "inet":
            port = _port(entry, facts)
            if port is None or port < 1024:
                out.low_ports.append(_where(entry))
    return out


def decide(services: Services, inst: ClassicInstance) -> tuple[str, list[Decision]]:
    """The hardening table: (instance kind, directives with reasons)."""
    out: list[Decision] = []

    def add(key: str, value: str, why: str) -> None:
        out.append(Decision(key, value, why))

    programs = services.runs_programs
    arbitrary = services.arbitrary
    virtual = services.delivery.get("virtual", [])
    kind = "delivery" if programs else ("virtual" if virtual else "edge")
    progs = ", ".join(programs)
    writable = [inst.queue_directory, inst.data_directory]
    if inst.maillog_file.startswith("/") and not inst.maillog_file.startswith("/dev/"):
        writable.append(posixpath.dirname(inst.maillog_file))
    if kind == "edge":
        add("ProtectSystem", "strict", "writes only its queue and data directories")
    elif kind == "virtual":
        base = inst.virtual_mailbox_base if inst.virtual_mailbox_base.startswith("/") else ""
        if base:
            writable.append(base)
            add("ProtectSystem", "strict", f"virtual(8) writes only below virtual_mailbox_base = {base}")
        else:
            add("ProtectSystem", "full", "virtual_mailbox_base is not a fixed path; /var stays writable")
    else:
        add("ProtectSystem", "full", f"{progs}: users' programs and file deliveries may write anywhere below /var")
    if out[-1].value == "strict":
        paths = " ".join(_quote_path(f"-{p}") for p in dict.fromkeys(writable))
        add("ReadWritePaths", paths, "queue, data (and log) directories")
    home_base = any(p == "/home" or p.startswith(("/home/", "/root")) for p in writable)
    if programs:
        add("ProtectHome", "no", f"{progs}: delivers to and runs programs from users' home directories")
    elif home_base:
        add("ProtectHome", "no", "virtual_mailbox_base is below /home")
    else:
        add("ProtectHome", "yes", "no delivery into home directories")
    if programs:
        add("PrivateTmp", "no", f"{progs}: users' programs may share /tmp with other services")
    else:
        add("PrivateTmp", "yes", "Postfix daemons use no /tmp")
    if arbitrary:
        add("PrivateDevices", "no", f"{', '.join(arbitrary)}: programs may need devices")
    else:
        add("PrivateDevices", "yes", "no daemon needs device nodes (/dev/log reaches journald through /run)")
    for name in ("ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
                 "ProtectHostname", "LockPersonality", "RestrictRealtime"):
        add(name, "yes", "never needed by Postfix or mail delivery")
    if arbitrary:
        add("ProtectClock", "no", f"{', '.join(arbitrary)}: programs are unknown")
        add("RestrictNamespaces", "no", f"{', '.join(arbitrary)}: programs are unknown")
    else:
        add("ProtectClock", "yes", "never needed by Postfix or mail delivery")
        add("RestrictNamespaces", "yes", "never needed by Postfix or mail delivery")
    add("SystemCallArchitectures", "native", "native binaries only")
    if programs:
        add("NoNewPrivileges", "no", f"{progs}: runs programs that may be set-uid/set-gid "
                                     "(sendmail -> set-gid postdrop, procmail, dotlock helpers)")
    else:
        add("NoNewPrivileges", "yes", "executes no set-uid/set-gid programs")
        add("RestrictSUIDSGID", "yes", "creates no set-uid/set-gid files")
    if programs:
        add("MemoryDenyWriteExecute", "no", f"{progs}: programs may use a JIT")
    else:
        add("MemoryDenyWriteExecute", "yes", "Postfix maps no writable and executable memory")
        add("ProtectProc", "invisible", "master needs no other users' processes")
        add("ProcSubset", "pid", "Postfix reads nothing below /proc/sys or /proc/net (getifaddrs uses netlink)")
        add("PrivateIPC", "yes", "Postfix uses no System V IPC")
        add("UMask", "0077", "Postfix sets the modes it needs itself")
    if not arbitrary:
        add("RestrictAddressFamilies", POSTFIX_FAMILIES, "every daemon probes IPv6; getifaddrs() needs netlink")
    caps = list(BASE_CAPS)
    if services.chrooted:
        caps.append("CAP_SYS_CHROOT")
    if services.low_ports:
        caps.append("CAP_NET_BIND_SERVICE")
    if programs or virtual:
        caps.extend(DELIVERY_CAPS)
    why = ["-u daemons, master signals its children, pre-jail access to private/, postfix check"]
    if services.chrooted:
        why.append(f"chroot: {services.chrooted[0]}" + (" and more" if len(services.chrooted) > 1 else ""))
    if services.low_ports:
        why.append(f"port below 1024: {', '.join(services.low_ports)}")
    if programs or virtual:
        why.append(f"delivery as the recipient: {', '.join(programs or virtual)}")
    add("CapabilityBoundingSet", " ".join(caps), "; ".join(why))
    if not programs:
        add("SystemCallFilter", "@system-service", "Postfix daemons need nothing beyond a system service")
        if services.chrooted:
            add("SystemCallFilter", "chroot", f"{len(services.chrooted)} chrooted entries, first {services.chrooted[0]}")
        add("SystemCallErrorNumber", "EPERM", "refused system calls fail instead of killing the daemon")
    return kind, out


def _quote(value: str) -> str:
    """One ExecStart= argument: no $VAR or %spec expansion, quotes and escapes kept, other bytes as \\xNN."""
    return exec_quote(value)


def _quote_path(value: str) -> str:
    """A path in a space-separated list setting; '%' is a specifier. systemd does not unescape it: UTF-8 only."""
    text = utf8_only(value, "a path").replace("%", "%%")
    return f'"{text}"' if re.search(r"[\s\"%]", value) else text


def _master_unit(inst: ClassicInstance, kind: str, decisions: Sequence[Decision], jail: bool, source: str) -> str:
    pf, cfg = _quote(inst.postfix), _quote(inst.config_directory)
    jail_units = [f"{inst.prefix}-jail.service"] if jail else []
    unit = [
        ("Description", f"Postfix mail system, instance {inst.name} ({inst.config_directory}, master mode, {kind})"),
        ("Documentation", "man:postfix(1) man:master(8)"),
        ("After", " ".join(["network-online.target", "nss-lookup.target", *inst.distribution_units] + jail_units)),
        ("Wants", " ".join(["network-online.target"] + jail_units)),
        # Debian's unit (masked as well) and the master-less units must never run a second master here.
        ("Conflicts", " ".join([*inst.distribution_units, f"{inst.prefix}.target"])),
    ]
    # postfix.service groups the instances (Debian); where it runs the primary's master itself
    # (Debian 13, other systems) it is masked for the primary and groups nothing.
    grouped = "postfix.service" not in inst.distribution_units
    if grouped:
        unit += [("PartOf", "postfix.service"), ("Before", "postfix.service"), ("ReloadPropagatedFrom", "postfix.service")]
    service: list[tuple[str, str]] = [
        ("Type", "forking"),
        ("PIDFile", posixpath.join(inst.queue_directory, "pid", "master.pid").replace("%", "%%")),
        ("ExecStartPre", f"{pf} -c {cfg} check"),
        # -c: only this instance; without it the primary's postfix would run the multi-instance wrapper.
        ("ExecStart", f"{pf} -c {cfg} start"),
        ("ExecReload", f"{pf} -c {cfg} reload"),
        ("ExecStop", f"{pf} -c {cfg} stop"),
        ("Restart", "on-failure"),
        ("RestartSec", "5s"),
    ]
    service.extend((d.key, d.value) for d in decisions)
    header = [f"Generated by mailfleet.postfix from {source}; hardening as master.cf allows:"]
    header += [f"  {d.key}={d.value}: {d.why}" for d in decisions if d.why and d.key not in _QUIET]
    return render_unit([("Unit", unit), ("Service", service),
                        ("Install", [("WantedBy", "multi-user.target postfix.service" if grouped else "multi-user.target")])],
                       header=header)


_QUIET = ("ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
          "ProtectHostname", "LockPersonality", "RestrictRealtime", "SystemCallArchitectures", "SystemCallErrorNumber")


def _jail_units(inst: ClassicInstance, watch: Sequence[str]) -> dict[str, str]:
    sync = posixpath.join(inst.libexec_directory, JAIL_SYNC)
    service = [
        ("Type", "oneshot"),
        ("ExecStart", f"{_quote(inst.python)} {_quote(sync)} refresh {_quote(inst.queue_directory)} --reload"),
        # Root without capabilities can still write the root-owned jail directories.
        ("CapabilityBoundingSet", ""),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", _quote_path(inst.queue_directory)),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("PrivateNetwork", "yes"),
        ("IPAddressDeny", "any"),
        ("RestrictAddressFamilies", "AF_UNIX"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        # @system-service keeps @chown: files are written as root:root with fchown().
        ("SystemCallFilter", "@system-service"),
        ("SystemCallErrorNumber", "EPERM"),
        ("UMask", "0022"),
    ]
    header = [f"Generated by mailfleet.postfix: keeps the chroot jail of {inst.config_directory} equal to its "
              "host sources (run by the .path unit and before every start)."]
    paths = [("PathChanged", p) for p in dict.fromkeys(watch)]
    return {
        f"{inst.prefix}-jail.service": render_unit([
            ("Unit", [("Description", f"Refresh the Postfix chroot jail {inst.queue_directory}"),
                      ("Before", inst.unit)]),
            ("Service", service)], header=header),
        f"{inst.prefix}-jail.path": render_unit([
            ("Unit", [("Description", f"Watch the host files copied into {inst.queue_directory}")]),
            ("Path", paths),
            ("Install", [("WantedBy", "paths.target")])], header=header),
    }


def build_classic_units(
    master: MasterLike,
    main: Optional[Mapping[str, Any]] = None,
    *,
    jail_watch: Sequence[str] = (),
    extra: Optional[Mapping[str, Any]] = None,
    source: str = "master.cf",
) -> ClassicUnits:
    """Units of one instance in master mode; jail units when ``jail_watch`` lists host files to watch."""
    params = {str(k): "" if v is None else str(v) for k, v in (main or {}).items()}
    inst = ClassicInstance.from_params(params, **dict(extra or {}))
    entries = as_entries(master, path=source)
    services = survey(entries, params, Params(params).get("known_tcp_ports") or DEFAULT_KNOWN_TCP_PORTS)
    kind, decisions = decide(services, inst)
    out = ClassicUnits(instance=inst, services=services, decisions=decisions, kind=kind)
    jail = bool(services.chrooted and jail_watch)
    out.units[inst.unit] = _master_unit(inst, kind, decisions, jail, source)
    if jail:
        out.units.update(_jail_units(inst, jail_watch))
    out.masks = list(inst.distribution_units)
    return out
