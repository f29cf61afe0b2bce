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
  the admin's programs as other users: those instances keep set-uid/set-gid
  execution, writable memory that is executable, /var (and, for local and pipe,
  /home), and nothing else: one unit holds smtpd too, so an entry relaxes only
  what it needs (decide());
* a command that is no Postfix daemon is refused unless named in custom_commands;
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

import os
import posixpath
import re
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from . import _host, _host_package
from ._classic_chroot import HostFacts, MasterLike, Params, as_entries, daemon_of, facts_of, plan_jail, running
from ._classic_jail_sync import probe_host
from ._host import (
    MASK_TARGET,
    SBIN_DIRS,
    Action,
    FileSpec,
    Observed,
    Runner,
    apply,
    checked,
    enabled,
    systemctl,
    unit_states,
)
from ._masterless_units import escape, exec_quote, render_unit
from ._postfix_mastercf import Entry, MasterCfError
from ._postfix_semantics import (
    DAEMONS,
    DEFAULT_KNOWN_TCP_PORTS,
    Facts,
    check_entry,
    daemon_for,
    default_port_resolver,
    flag_of,
    inet_port,
    instance_name,
    instance_short_name,
    is_delivery,
)
from ._systemd_sandbox import list_path, list_paths, unit_path

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
    # The distribution's units that run master(8) for this instance, space-separated (_masterless_generator.master_units).
    distribution_unit: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **extra: Any) -> ClassicInstance:
        known = set(cls.__dataclass_fields__)
        values: dict[str, str] = {}
        for key, value in params.items():
            if key == "multi_instance_name":
                values["name"] = instance_name(str(value).strip())  # before any path or unit name
            elif key in known and value is not None:
                values[key] = str(value).strip()
        values.update({k: str(v) for k, v in extra.items() if v is not None})
        return cls(**values)

    @property
    def short_name(self) -> str:
        """'default' for the primary, 'edge' for postfix-edge (as the master-less units name it)."""
        return instance_short_name(self.name)

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
    # Commands that are no Postfix daemon, allowed by name (custom_commands): run like pipe(8) programs.
    custom: list[str] = field(default_factory=list)
    chrooted: list[str] = field(default_factory=list)
    low_ports: list[str] = field(default_factory=list)

    @property
    def runs_programs(self) -> list[str]:
        """Entries that execute programs (users' .forward commands, argv=, custom daemons): set-gid postdrop and more."""
        return [where for d in ("local", "pipe", "spawn") for where in self.delivery.get(d, [])] + self.custom

    @property
    def home_writers(self) -> list[str]:
        """Entries that deliver into home directories (~/Maildir, .forward files, dovecot-lda, maildrop)."""
        return [where for d in ("local", "pipe") for where in self.delivery.get(d, [])] + self.custom


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


def survey(entries: Sequence[Entry], params: Mapping[str, str], known_ports: str = "",
           custom_commands: Sequence[str] = ()) -> Services:
    """What the instance's master(8) runs: delivery agents, custom programs, chroot, privileged ports.

    A command that is no Postfix daemon is refused unless ``custom_commands`` names it: one unit
    holds every process master(8) starts, so one unknown program would set the sandbox of all.
    """
    facts = facts_of(params)
    if known_ports:
        facts = Facts(**{**facts.to_dict(), "known_tcp_ports": known_ports})
    out = Services()
    running_now, _warnings = running(list(entries), params)
    for entry in running_now:
        daemon = daemon_of(entry)
        command = entry.parsed.fields["command"]
        if command in custom_commands:
            out.custom.append(f"{_where(entry)} ({command})")
        elif "/" in command or daemon not in DAEMONS:
            # master(8) runs daemon_directory/COMMAND: 'x/smtpd' is not smtpd.
            raise MasterCfError(
                f"'{entry.service} {entry.type}': command '{command}' is not a Postfix daemon "
                f"({', '.join(sorted(DAEMONS))}); a typo, or a program this unit cannot sandbox. "
                "Run programs through pipe(8) or spawn(8), or name a daemon of your own in custom_commands",
                path=entry.path, line=entry.first_line, field_name="command", value=command)
        else:
            check_entry(entry, daemon_for(entry), facts)
            if is_delivery(daemon):
                out.delivery.setdefault(daemon, []).append(_where(entry))
        if flag_of(entry, "chroot", facts):
            out.chrooted.append(_where(entry))
        if entry.type == "inet":
            port = _port(entry, facts)
            if port is None or port < 1024:
                out.low_ports.append(_where(entry))
    return out


def decide(services: Services, inst: ClassicInstance) -> tuple[str, list[Decision]]:
    """The hardening table: (instance kind, directives with reasons).

    One unit holds every process master(8) starts, so it allows the union of what its entries need
    and nothing more. What each relaxation is for, as measured in the lab (docs/chroot.md):
    programs run by local(8), pipe(8) and spawn(8) may be set-uid/set-gid (a .forward's sendmail
    runs set-gid postdrop) and may JIT; local(8) and pipe(8) write into home directories; their
    programs may write anywhere below /var. Nothing forces devices, extra socket families,
    namespaces, the clock, a shared /tmp or system calls beyond @system-service.
    """
    out: list[Decision] = []

    def add(key: str, value: str, why: str) -> None:
        out.append(Decision(key, value, why))

    programs = services.runs_programs
    homes = services.home_writers
    virtual = services.delivery.get("virtual", [])
    kind = "delivery" if programs else ("virtual" if virtual else "edge")
    progs = ", ".join(programs)
    # path -> the parameter it comes from (named when list_paths refuses it)
    writable = {inst.queue_directory: "queue_directory"}
    writable.setdefault(inst.data_directory, "data_directory")
    if inst.maillog_file.startswith("/") and not inst.maillog_file.startswith("/dev/"):
        writable.setdefault(posixpath.dirname(inst.maillog_file), "maillog_file")
    if kind == "edge":
        add("ProtectSystem", "strict", "writes only its queue and data directories")
    elif kind == "virtual":
        base = inst.virtual_mailbox_base if inst.virtual_mailbox_base.startswith("/") else ""
        if base:
            writable.setdefault(base, "virtual_mailbox_base")
            add("ProtectSystem", "strict", f"virtual(8) writes only below virtual_mailbox_base = {base}")
        else:
            add("ProtectSystem", "full", "virtual_mailbox_base is not a fixed path; /var stays writable")
    else:
        add("ProtectSystem", "full", f"{progs}: users' programs and file deliveries may write anywhere below /var")
    if out[-1].value == "strict":
        paths = list_paths(list(writable), list(writable.values()), prefix="-")
        add("ReadWritePaths", paths, "queue, data (and log) directories")
    home_base = any(p == "/home" or p.startswith(("/home/", "/root")) for p in writable)
    if homes:
        add("ProtectHome", "no", f"{', '.join(homes)}: delivers to and runs programs from users' home directories")
    elif home_base:
        add("ProtectHome", "no", "virtual_mailbox_base is below /home")
    else:
        add("ProtectHome", "yes", "no delivery into home directories")
    add("PrivateTmp", "yes", "Postfix daemons use no /tmp; programs of local, pipe and spawn get a /tmp of their own")
    add("PrivateDevices", "yes", "no daemon or delivery needs device nodes (/dev/log reaches journald through /run)")
    for name in ("ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
                 "ProtectHostname", "LockPersonality", "RestrictRealtime"):
        add(name, "yes", "never needed by Postfix or mail delivery")
    add("ProtectClock", "yes", "never needed by Postfix or mail delivery")
    add("RestrictNamespaces", "yes", "never needed by Postfix or mail delivery")
    add("SystemCallArchitectures", "native", "native binaries only")
    if programs:
        # setuid() by root (pipe_command, local) is no new privilege; exec of a set-gid file is.
        add("NoNewPrivileges", "no", f"{progs}: runs programs that may be set-uid/set-gid "
                                     "(sendmail -> set-gid postdrop, procmail, dotlock helpers)")
    else:
        add("NoNewPrivileges", "yes", "executes no set-uid/set-gid programs")
    add("RestrictSUIDSGID", "yes", "no daemon or delivery creates set-uid/set-gid files")
    if programs:
        add("MemoryDenyWriteExecute", "no", f"{progs}: programs may use a JIT")
    else:
        add("MemoryDenyWriteExecute", "yes", "Postfix maps no writable and executable memory")
    add("ProtectProc", "invisible", "master and deliveries need no other users' processes")
    if not programs:
        add("ProcSubset", "pid", "Postfix reads nothing below /proc/sys or /proc/net (getifaddrs uses netlink)")
    add("PrivateIPC", "yes", "Postfix uses no System V IPC; programs keep theirs among themselves")
    add("UMask", "0077", "master(8) sets umask 077 itself; Postfix sets the modes it needs")
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
    add("SystemCallFilter", "@system-service", "Postfix daemons and mail programs need nothing beyond a system service")
    if services.chrooted:
        add("SystemCallFilter", "chroot", f"{len(services.chrooted)} chrooted entries, first {services.chrooted[0]}")
    add("SystemCallErrorNumber", "EPERM", "refused system calls fail instead of killing the daemon")
    return kind, out


def _quote(value: str) -> str:
    """One ExecStart= argument: no $VAR or %spec expansion, quotes and escapes kept, other bytes as \\xNN."""
    return exec_quote(value)


def _executable(path: str, what: str) -> str:
    """The program word of ExecStart=: systemd reads '-', '@', '+', '!', ':' before it as flags even when quoted."""
    if not path.startswith("/"):
        raise MasterCfError(f"{what} '{path}' is not an absolute path; systemd cannot run it as a unit's command",
                            field_name=what, value=path)
    return exec_quote(path)


def _master_unit(inst: ClassicInstance, kind: str, decisions: Sequence[Decision], jail: bool, source: str) -> str:
    pf, cfg = _executable(inst.postfix, "command_directory"), _quote(inst.config_directory)
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
        ("PIDFile", unit_path(posixpath.join(inst.queue_directory, "pid", "master.pid"), "queue_directory")),
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
        # -I -S: root runs it; no .pth file or user site directory may add code.
        ("ExecStart", f"{_executable(inst.python, 'python')} -I -S {_quote(sync)} refresh {_quote(inst.queue_directory)} "
                      "--reload"),
        # Root writes the root-owned jail directories without capabilities; CAP_CHOWN gives each copy
        # its source's owner and group (a 0640 root:postfix file stays that).
        ("CapabilityBoundingSet", "CAP_CHOWN"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", list_path(inst.queue_directory, "queue_directory")),
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
        # @system-service keeps @chown: copies get their source's owner with fchown().
        ("SystemCallFilter", "@system-service"),
        ("SystemCallErrorNumber", "EPERM"),
        ("UMask", "0022"),
    ]
    header = [f"Generated by mailfleet.postfix: keeps the chroot jail of {inst.config_directory} equal to its "
              "host sources (run by the .path unit and before every start)."]
    paths = [("PathChanged", unit_path(p, "a chroot source file")) for p in dict.fromkeys(watch)]
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
    custom_commands: Sequence[str] = (),
) -> ClassicUnits:
    """Units of one instance in master mode; jail units when ``jail_watch`` lists host files to watch.

    ``custom_commands``: master.cf commands that are no Postfix daemon and may run anyway, with
    what pipe(8) programs get; any other unknown command is refused (MasterCfError).
    """
    params = {str(k): "" if v is None else str(v) for k, v in (main or {}).items()}
    inst = ClassicInstance.from_params(params, **dict(extra or {}))
    entries = as_entries(master, path=source)
    services = survey(entries, params, Params(params).get("known_tcp_ports") or DEFAULT_KNOWN_TCP_PORTS,
                      custom_commands)
    kind, decisions = decide(services, inst)
    out = ClassicUnits(instance=inst, services=services, decisions=decisions, kind=kind)
    jail = bool(services.chrooted and jail_watch)
    out.units[inst.unit] = _master_unit(inst, kind, decisions, jail, source)
    if jail:
        out.units.update(_jail_units(inst, jail_watch))
    out.masks = list(inst.distribution_units)
    return out


# --------------------------------------------------------------------------- the module's plan
#
# instance_unit observes the host (files, systemd's view of the units, a master outside them),
# plan() turns that and the wanted state into actions, and _host.execute runs them: check mode
# reports the very list a real run performs.

# The jail sync runs as a module of the package the master-less side installs too (_host_package).
JAIL_LAUNCHER = """#!{python} -IS
# Installed by mailfleet.postfix (instance_unit): chroot-sync refresh QUEUE_DIRECTORY [--reload] (see _classic_jail_sync.py).
import sys
sys.path.insert(0, {libexec!r})
from mailfleet_postfix._classic_jail_sync import main
sys.exit(main(sys.argv))
"""
MASK_REFUSED = ("{path} exists and is not a mask (a link to /dev/null); it would start a second master for this "
                "instance. Remove it, or let this module mask it.")


class UnitPlanError(Exception):
    """The wanted state cannot be reached on this host; nothing was changed."""


def managed_units(inst: ClassicInstance) -> list[str]:
    """Every unit file name this module may have written for the instance, master unit first."""
    return [inst.unit, f"{inst.prefix}-jail.service", f"{inst.prefix}-jail.path"]


def jail_watch(master_text: str, params: Mapping[str, str], source: str) -> list[str]:
    """Host files the jail copies (and their symlink targets): what the .path unit watches."""
    facts = probe_host([v for k, v in params.items() if k.endswith("_CApath") and v.startswith("/")])
    watch: list[str] = []
    for item in plan_jail(master_text, params, HostFacts.from_dict(facts), path=source).items:
        if item.kind in ("file", "passwd", "certs") and item.source.startswith("/etc/"):
            watch.append(item.source)
            real = os.path.realpath(item.source)
            if real != item.source:
                watch.append(real)
    return watch


def generate(master_text: str, params: Mapping[str, str], *, config_dir: str, source: str, absent: bool, jail: bool,
             libexec: str, python: str, custom_commands: Sequence[str]) -> ClassicUnits:
    """The instance's units as this host runs them; for removal only the names count (a master.cf
    refused now must not block it)."""
    from ._masterless_generator import master_units

    watch = jail_watch(master_text, params, source) if jail and not absent else []
    distribution = master_units(params.get("multi_instance_name") or "-", params.get("config_directory") or config_dir)
    return build_classic_units("" if absent else master_text, params, jail_watch=watch, source=source,
                               custom_commands=custom_commands,
                               extra={"libexec_directory": libexec, "python": python,
                                      "distribution_unit": " ".join(distribution) or None})


def file_specs(generated: ClassicUnits, unit_dir: str, *, absent: bool) -> list[FileSpec]:
    """The wanted unit files, masks and (with jail units) the jail sync."""
    specs = [FileSpec(posixpath.join(unit_dir, name), absent=True) if absent or name not in generated.units
             else FileSpec(posixpath.join(unit_dir, name), generated.units[name])
             for name in managed_units(generated.instance)]
    specs += [FileSpec(posixpath.join(unit_dir, name), absent=True, only_if_link_to=MASK_TARGET) if absent
              else FileSpec.mask(posixpath.join(unit_dir, name)) for name in generated.masks]
    if not absent and f"{generated.instance.prefix}-jail.service" in generated.units:
        specs += jail_sync_files(generated.instance.libexec_directory, generated.instance.python)
    return specs


def jail_sync_files(libexec: str, python: str) -> list[FileSpec]:
    """The launcher at JAIL_SYNC and the whole package it imports, as the master-less side writes it."""
    return _host_package.package_files(libexec) + [
        FileSpec(posixpath.join(libexec, JAIL_SYNC), JAIL_LAUNCHER.format(python=python, libexec=libexec), mode=0o755)]


def refuse(specs: Sequence[FileSpec], seen: Mapping[str, Observed]) -> None:
    """A unit file where a mask belongs would start a second master; a directory is never removed."""
    for spec in specs:
        now = seen.get(spec.path)
        if now is None:
            continue
        if spec.link == MASK_TARGET and now.kind != "absent" and not (now.kind == "link" and now.link == MASK_TARGET):
            raise UnitPlanError(MASK_REFUSED.format(path=spec.path))
        if now.kind == "directory" and not spec.directory and not spec.only_if_link_to:
            raise UnitPlanError(f"{spec.path} is a directory; refusing to replace or remove it")


@dataclass(frozen=True)
class UnitsSeen:
    """systemd's view of the instance, observed before anything is done."""

    booted: bool
    enabled: frozenset[str] = frozenset()  # units `systemctl is-enabled` calls enabled
    active: frozenset[str] = frozenset()  # units active, reloading or activating
    master_running: bool = False  # `postfix status` succeeds (a master, maybe outside any unit)


def observe_units(run: Runner, inst: ClassicInstance, state: str) -> UnitsSeen:
    if not _host.booted():
        return UnitsSeen(False, enabled=frozenset(u for u in managed_units(inst)[::2] if enabled(run, u)))
    names = managed_units(inst)
    states = unit_states(run, names + inst.distribution_units)
    running_units = frozenset(u for u, s in states.items() if s.get("ActiveState") in ("active", "reloading",
                                                                                       "activating"))
    master = state == "started" and inst.unit not in running_units and run([inst.postfix, "-c", inst.config_directory,
                                                                           "status"])[0] == 0
    return UnitsSeen(True, enabled=frozenset(u for u in names[::2] if enabled(run, u)), active=running_units,
                     master_running=master)


def _systemctl(*args: str) -> Action:
    return Action(f"systemctl {' '.join(args)}", "systemctl", args)


def plan(state: str, enable: bool, inst: ClassicInstance, units: Sequence[str], changes: Sequence[FileSpec],
         seen: UnitsSeen) -> list[Action]:
    """The ordered actions from the wanted state, the files that differ (``changes``) and systemd's view.

    absent stops and disables before the files go; otherwise the files come first, then the unit
    is enabled and (started) started, or restarted when its file changed: hardening applies at start."""
    if state in ("started", "stopped") and not seen.booted:
        raise UnitPlanError(f"state={state} needs a running systemd (/run/systemd/system is missing); "
                            "use state=present to only install the units")
    files = [Action(f"{'remove' if s.absent else 'write'} {s.path}", "file", (s,)) for s in changes]
    package = _host_package.package_dir(inst.libexec_directory)
    if any(s.path.startswith(package + "/") and not s.absent for s in changes):
        files.append(Action(f"compile {package}", "compile", (inst.python, inst.libexec_directory)))
    files += [_systemctl("daemon-reload")] if changes and seen.booted else []
    unit, jail_service, jail_path = managed_units(inst)
    if state == "absent":
        if not seen.booted:
            return files
        stops = [_systemctl("stop", n) for n in (jail_path, unit, jail_service) if n in seen.active]
        return stops + [_systemctl("disable", n) for n in (jail_path, unit) if n in seen.enabled] + files
    paths = [u for u in units if u.endswith(".path")]
    out = files + [_systemctl("enable" if enable else "disable", n) for n in [unit, *paths]
                   if (n in seen.enabled) != enable]
    if not seen.booted:
        return out
    running_now = unit in seen.active
    if state == "started":
        if not running_now:
            out += [_systemctl("stop", n) for n in inst.distribution_units if n in seen.active]
            # A master outside any unit: hand it over instead of failing with "already running".
            out += [Action(f"{inst.postfix} -c {inst.config_directory} stop", "stop_outside", (inst,))
                    ] if seen.master_running else []
            out.append(_systemctl("start", unit))
        elif any(s.path.endswith("/" + unit) and not s.absent for s in changes):
            out.append(_systemctl("restart", unit))
        out += [_systemctl("start", n) for n in paths if n not in seen.active]
    elif state == "stopped" and running_now:
        out.append(_systemctl("stop", unit))
    return out


def stop_outside(run: Runner, inst: ClassicInstance) -> None:
    """Stop the instance's master when one still runs (the distribution's unit may have taken it down)."""
    argv = [inst.postfix, "-c", inst.config_directory]
    if run([*argv, "status"])[0] == 0:
        checked(run, [*argv, "stop"])


def operations(run: Runner) -> dict[str, Callable[..., Any]]:
    return {"file": apply, "systemctl": lambda *args: systemctl(run, *args),
            "stop_outside": lambda inst: stop_outside(run, inst),
            "compile": lambda python, libexec: _host_package.compile_package(run, python, libexec)}


def exposure(run: Runner, tmpdir: str, name: str, text: str) -> Optional[float]:
    """systemd-analyze's score of the generated unit (a copy in tmpdir, so check mode works too)."""
    binary = shutil.which("systemd-analyze", path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS]))
    if not binary:
        return None
    path = posixpath.join(tmpdir, name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    _code, out, err = run([binary, "security", "--offline=yes", path])
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out + err)
    return float(match.group(1)) if match else None
