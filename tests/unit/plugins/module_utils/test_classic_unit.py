"""Master-mode units: computed hardening per instance kind, and measured exposure."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils._classic_unit import (
    ClassicInstance,
    ClassicUnits,
    build_classic_units,
)
from ansible_collections.mailfleet.postfix.plugins.module_utils._mastercf import MasterCf, MasterCfError

FIXTURES = Path(__file__).parent / "fixtures"
DEBIAN = (FIXTURES / "debian-master.cf").read_text()
CORPUS = Path(__file__).resolve().parents[4].parent / "shared" / "corpus" / "valid"
CORPUS_FILES = sorted(CORPUS.glob("*.cf")) if CORPUS.is_dir() else []
DELIVERY_DAEMONS = ("local", "virtual", "pipe", "spawn")
EDGE_MAIN = {"multi_instance_name": "postfix-edge", "config_directory": "/etc/postfix-edge",
             "queue_directory": "/var/spool/postfix-edge", "data_directory": "/var/lib/postfix-edge",
             "compatibility_level": "3.6"}


def without(text: str, *daemons: str) -> str:
    doc = MasterCf.parse(text)
    for entry in doc.entries(enabled=True):
        if entry.parsed.fields["command"] in daemons:
            entry.disable()
    return doc.render()


EDGE = without(DEBIAN, *DELIVERY_DAEMONS)
LOCAL_ONLY = without(DEBIAN, "pipe", "virtual")


def settings(units: ClassicUnits) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    section = ""
    for line in units.units[units.instance.unit].splitlines():
        if line.startswith("["):
            section = line
        elif "=" in line and not line.startswith("#") and section == "[Service]":
            key, value = line.partition("=")[::2]
            out.setdefault(key, []).append(value)
    return out


def test_edge_gets_the_strict_profile() -> None:
    units = build_classic_units(EDGE, EDGE_MAIN)
    got = settings(units)
    assert units.kind == "edge"
    assert got["NoNewPrivileges"] == ["yes"] and got["RestrictSUIDSGID"] == ["yes"]
    assert got["ProtectHome"] == ["yes"] and got["ProtectSystem"] == ["strict"]
    assert got["ReadWritePaths"] == ["-/var/spool/postfix-edge -/var/lib/postfix-edge"]
    assert got["PrivateTmp"] == ["yes"] and got["PrivateDevices"] == ["yes"]
    assert got["MemoryDenyWriteExecute"] == ["yes"]
    assert got["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"]
    caps = got["CapabilityBoundingSet"][0].split()
    assert {"CAP_SYS_CHROOT", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_KILL"} <= set(caps)
    assert "CAP_FSETID" not in caps and "CAP_SYS_ADMIN" not in caps
    assert got["SystemCallFilter"] == ["@system-service", "chroot"]


def test_local_delivery_keeps_what_setuid_delivery_and_setgid_postdrop_need() -> None:
    units = build_classic_units(LOCAL_ONLY, {"compatibility_level": "3.6"})
    got = settings(units)
    assert units.kind == "delivery"
    assert got["NoNewPrivileges"] == ["no"] and got["MemoryDenyWriteExecute"] == ["no"]
    for absent in ("RestrictSUIDSGID", "SystemCallFilter"):
        assert absent not in got, absent
    assert got["ProtectHome"] == ["no"] and got["ProtectSystem"] == ["full"] and got["PrivateTmp"] == ["no"]
    assert got["PrivateDevices"] == ["yes"]  # local runs users' commands, not device programs
    assert "CAP_FSETID" in got["CapabilityBoundingSet"][0]
    why = {d.key: d.why for d in units.decisions}
    assert "local/unix line 21" in why["NoNewPrivileges"] and "postdrop" in why["NoNewPrivileges"]


def test_pipe_keeps_devices_and_socket_families() -> None:
    got = settings(build_classic_units(DEBIAN, {"compatibility_level": "3.6"}))
    assert got["PrivateDevices"] == ["no"]
    assert "RestrictAddressFamilies" not in got and got["RestrictNamespaces"] == ["no"]


def test_virtual_only_keeps_no_new_privileges() -> None:
    text = without(DEBIAN, "local", "pipe")
    units = build_classic_units(text, {"compatibility_level": "3.6", "virtual_mailbox_base": "/srv/vmail"})
    got = settings(units)
    assert units.kind == "virtual"
    assert got["NoNewPrivileges"] == ["yes"] and got["ProtectHome"] == ["yes"]
    assert "-/srv/vmail" in got["ReadWritePaths"][0]
    home = settings(build_classic_units(text, {"virtual_mailbox_base": "/home/vmail"}))
    assert home["ProtectHome"] == ["no"]
    unknown = settings(build_classic_units(text, {"virtual_mailbox_base": "$somewhere"}))
    assert unknown["ProtectSystem"] == ["full"] and "ReadWritePaths" not in unknown


def test_master_service_disable_counts() -> None:
    units = build_classic_units(LOCAL_ONLY, {"compatibility_level": "3.6", "master_service_disable": "local.unix"})
    assert units.kind == "edge"


def test_unknown_commands_are_treated_like_pipe() -> None:
    units = build_classic_units("filter unix - n n - - my-filter\n", {})
    assert units.kind == "delivery" and "my-filter" in " ".join(d.why for d in units.decisions)


def test_capabilities_follow_chroot_and_ports() -> None:
    text = "2525 inet n - n - - smtpd\npickup unix n - n 60 1 pickup\n"
    got = settings(build_classic_units(text, {"compatibility_level": "3.6"}))
    caps = got["CapabilityBoundingSet"][0].split()
    assert "CAP_SYS_CHROOT" not in caps and "CAP_NET_BIND_SERVICE" not in caps
    assert got["SystemCallFilter"] == ["@system-service"]
    named = settings(build_classic_units("submission inet n - n - - smtpd\n", {}))
    assert "CAP_NET_BIND_SERVICE" in named["CapabilityBoundingSet"][0]
    unknown = settings(build_classic_units("myport inet n - n - - smtpd\n", {}))
    assert "CAP_NET_BIND_SERVICE" in unknown["CapabilityBoundingSet"][0]
    dash = settings(build_classic_units("smtp unix - - - - - smtp\n", {}))  # compatibility_level 0: '-' is y
    assert "CAP_SYS_CHROOT" in dash["CapabilityBoundingSet"][0]


def test_commands_and_names() -> None:
    units = build_classic_units(EDGE, EDGE_MAIN)
    got = settings(units)
    assert units.instance.unit == "postfix-edge-master.service"
    assert got["Type"] == ["forking"] and got["PIDFile"] == ["/var/spool/postfix-edge/pid/master.pid"]
    assert got["ExecStartPre"] == ["/usr/sbin/postfix -c /etc/postfix-edge check"]
    assert got["ExecStart"] == ["/usr/sbin/postfix -c /etc/postfix-edge start"]
    assert got["ExecReload"] == ["/usr/sbin/postfix -c /etc/postfix-edge reload"]
    assert units.masks == ["postfix@postfix-edge.service"]
    text = units.units[units.instance.unit]
    assert "Conflicts=postfix@postfix-edge.service postfix-edge.target" in text
    assert "WantedBy=multi-user.target postfix.service" in text
    primary = build_classic_units(DEBIAN, {})
    assert primary.instance.unit == "postfix-default-master.service" and primary.masks == ["postfix@-.service"]
    assert "postmulti" not in primary.units[primary.instance.unit]


def test_debian_13_primary_masks_postfix_service_and_leaves_its_group() -> None:
    # Debian 13's postfix.service runs the primary's master itself: masked, and no group to join.
    primary = build_classic_units(DEBIAN, {}, extra={"distribution_unit": "postfix.service"})
    text = primary.units[primary.instance.unit]
    assert primary.masks == ["postfix.service"]
    assert "Conflicts=postfix.service postfix-default.target" in text
    assert "PartOf=" not in text and "ReloadPropagatedFrom=" not in text
    assert "WantedBy=multi-user.target\n" in text


def test_paths_are_quoted() -> None:
    units = build_classic_units(EDGE, {"config_directory": "/etc/post fix", "command_directory": "/opt/p%x",
                                       "queue_directory": "/var/spool/p%q"})
    got = settings(units)
    assert got["ExecStart"] == ['/opt/p%%x/postfix -c "/etc/post fix" start']
    assert got["PIDFile"] == ["/var/spool/p%%q/pid/master.pid"]
    assert got["ReadWritePaths"] == ['"-/var/spool/p%%q" -/var/lib/postfix']


def test_bad_instance_name() -> None:
    with pytest.raises(MasterCfError, match="cannot be used in unit and file names"):
        build_classic_units(EDGE, {"multi_instance_name": "postfix-a b"})
    assert ClassicInstance(name="postfix-out-2").unit == "postfix-out\\x2d2-master.service"


def test_jail_units_only_when_chrooted_and_watched() -> None:
    watched = build_classic_units(EDGE, EDGE_MAIN, jail_watch=["/etc/resolv.conf", "/etc/hosts", "/etc/hosts"])
    path = watched.units["postfix-edge-jail.path"]
    assert path.count("PathChanged=") == 2 and "PathChanged=/etc/resolv.conf" in path
    service = watched.units["postfix-edge-jail.service"]
    assert "refresh /var/spool/postfix-edge" in service and "CapabilityBoundingSet=\n" in service
    main = watched.units["postfix-edge-master.service"]
    assert "Wants=network-online.target postfix-edge-jail.service" in main
    assert set(build_classic_units(EDGE, EDGE_MAIN).units) == {"postfix-edge-master.service"}
    no_chroot = MasterCf.parse(EDGE)
    for entry in no_chroot.entries(enabled=True):
        entry.set_field("chroot", "n")
    assert set(build_classic_units(no_chroot.render(), EDGE_MAIN, jail_watch=["/etc/hosts"]).units) == {
        "postfix-edge-master.service"}


def test_every_decision_has_a_reason() -> None:
    for text in (EDGE, LOCAL_ONLY, DEBIAN):
        for decision in build_classic_units(text, {}).decisions:
            assert decision.why, decision


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.name for p in CORPUS_FILES])
def test_corpus_generates(path: Path) -> None:
    units = build_classic_units(path.read_text(errors="replace"), {"compatibility_level": "3.6"})
    assert units.units[units.instance.unit].count("[Service]") == 1


# --------------------------------------------------------------------------- measured with systemd-analyze

ANALYZE = shutil.which("systemd-analyze")


def _offline_supported() -> bool:
    if not ANALYZE:
        return False
    out = subprocess.run([ANALYZE, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"systemd (\d+)", out)
    return match is not None and int(match.group(1)) >= 250


needs_analyze = pytest.mark.skipif(not _offline_supported(), reason="needs systemd-analyze >= 250 (--offline)")


def exposure(units: ClassicUnits, tmp_path: Path) -> float:
    path = tmp_path / units.instance.unit
    path.write_text(units.units[units.instance.unit])
    out = subprocess.run([ANALYZE or "systemd-analyze", "security", "--offline=yes", str(path)],
                         capture_output=True, text=True, check=False)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout + out.stderr)
    assert match, out.stdout + out.stderr
    return float(match.group(1))


@needs_analyze
@pytest.mark.parametrize(("name", "text", "main", "limit"), [
    ("edge", EDGE, EDGE_MAIN, 4.0),
    ("delivery (local)", LOCAL_ONLY, {"compatibility_level": "3.6"}, 9.6),
    ("delivery (Debian default, pipe)", DEBIAN, {"compatibility_level": "3.6"}, 9.6),
])
def test_exposure(name: str, text: str, main: dict[str, str], limit: float, tmp_path: Path,
                  capsys: pytest.CaptureFixture[str]) -> None:
    score = exposure(build_classic_units(text, main), tmp_path)
    with capsys.disabled():
        print(f"\nexposure {name}: {score}")
    if limit == 4.0:
        assert score <= limit
    else:
        assert score < limit


@needs_analyze
def test_units_have_no_unknown_keys(tmp_path: Path) -> None:
    units = build_classic_units(EDGE, EDGE_MAIN, jail_watch=["/etc/hosts"])
    for name, text in units.units.items():
        (tmp_path / name).write_text(text)
    out = subprocess.run([ANALYZE or "systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
                         capture_output=True, text=True, check=False)
    assert not re.search(r"Unknown (key|section|lvalue)|Invalid|Failed to parse", out.stderr + out.stdout), out.stderr
