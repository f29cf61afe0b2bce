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
from ansible_collections.mailfleet.postfix.plugins.module_utils._masterless_bridge import exec_words
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import MasterCf, MasterCfError

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


# What every kind keeps: a local, pipe or spawn entry relaxes only what its programs need.
KEPT = {"PrivateDevices": ["yes"], "PrivateTmp": ["yes"], "RestrictSUIDSGID": ["yes"], "ProtectClock": ["yes"],
        "RestrictNamespaces": ["yes"], "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"],
        "ProtectProc": ["invisible"], "PrivateIPC": ["yes"], "SystemCallErrorNumber": ["EPERM"]}
EDGE_PIPE = EDGE + "filter unix - n n - 10 pipe flags=Rq user=nobody argv=/usr/bin/true ${sender}\n"
EDGE_SPAWN = EDGE + "policy unix - n n - 0 spawn user=nobody argv=/usr/bin/true\n"


def test_local_delivery_keeps_what_setuid_delivery_and_setgid_postdrop_need() -> None:
    units = build_classic_units(LOCAL_ONLY, {"compatibility_level": "3.6"})
    got = settings(units)
    assert units.kind == "delivery"
    assert got["NoNewPrivileges"] == ["no"] and got["MemoryDenyWriteExecute"] == ["no"] and "ProcSubset" not in got
    assert got["ProtectHome"] == ["no"] and got["ProtectSystem"] == ["full"]
    assert {k: got.get(k) for k in KEPT} == KEPT
    assert got["SystemCallFilter"] == ["@system-service", "chroot"]
    assert "CAP_FSETID" in got["CapabilityBoundingSet"][0]
    why = {d.key: d.why for d in units.decisions}
    assert "local/unix line 21" in why["NoNewPrivileges"] and "postdrop" in why["NoNewPrivileges"]


@pytest.mark.parametrize(("text", "home"), [(DEBIAN, "no"), (EDGE_PIPE, "no"), (EDGE_SPAWN, "yes")])
def test_pipe_and_spawn_relax_only_what_their_programs_need(text: str, home: str) -> None:
    got = settings(build_classic_units(text, {"compatibility_level": "3.6"}))
    assert {k: got.get(k) for k in KEPT} == KEPT
    assert got["NoNewPrivileges"] == ["no"] and got["ProtectSystem"] == ["full"] and got["ProtectHome"] == [home]
    assert got["SystemCallFilter"][0] == "@system-service"


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


@pytest.mark.parametrize("command", ["smptd", "my-filter", "x/smtpd", "../sbin/smtpd", "/usr/lib/postfix/sbin/smtpd"])
def test_unknown_commands_are_refused(command: str) -> None:
    # One unit holds every process master(8) starts: a typo must not relax smtpd's sandbox.
    text = EDGE + f"filter unix - n n - - {command}\n"
    line = text.count("\n")
    with pytest.raises(MasterCfError, match=f"line {line}: 'filter unix': command '{re.escape(command)}' is not a Postfix "
                                            "daemon") as info:
        build_classic_units(text, {})
    assert info.value.field_name == "command"


def test_custom_commands_run_with_what_pipe_programs_get() -> None:
    text = EDGE + "filter unix - n n - - my-filter\n"
    units = build_classic_units(text, {"compatibility_level": "3.6"}, custom_commands=["my-filter"])
    got = settings(units)
    assert units.kind == "delivery" and "my-filter" in " ".join(d.why for d in units.decisions)
    assert got["NoNewPrivileges"] == ["no"] and got["ProtectHome"] == ["no"]
    assert {k: got.get(k) for k in KEPT} == KEPT


def test_daemon_rules_are_checked_as_in_master_less_mode() -> None:
    with pytest.raises(MasterCfError, match="local requires privileged operation"):
        build_classic_units(EDGE + "local unix - - n - - local\n", {"compatibility_level": "3.6"})


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
    assert got["ReadWritePaths"] == ["-/var/spool/p%%q -/var/lib/postfix"]


@pytest.mark.parametrize("config", ["/etc/postfix-$HOME", "/etc/postfix-${HOME}", "/etc/p%h", "/etc/a b\"c'd\\e",
                                    "/etc/p;", "/etc/p\tq"])
def test_exec_start_passes_paths_literally(config: str) -> None:
    # systemd expands $VAR and %spec in ExecStart= and unquotes C escapes: every word must come back as written.
    units = build_classic_units(EDGE, {"config_directory": config, "command_directory": "/opt/$x%y"},
                                jail_watch=["/etc/hosts"], extra={"python": "/opt/py$THON"})
    got = settings(units)
    for key in ("ExecStartPre", "ExecStart", "ExecReload", "ExecStop"):
        words = exec_words(got[key][0])
        assert words[:3] == ["/opt/$x%y/postfix", "-c", config], key
        # Not one '$' or '%' that systemd would expand (exec_words takes a single one literally).
        assert "$" not in got[key][0].replace("$$", "") and "%" not in got[key][0].replace("%%", ""), key
    jail = units.units["postfix-default-jail.service"]
    line = next(x for x in jail.splitlines() if x.startswith("ExecStart="))
    assert exec_words(line.partition("=")[2])[0] == "/opt/py$THON"


@pytest.mark.parametrize(("main", "extra", "field"), [({"command_directory": "-/usr/sbin"}, {}, "command_directory"),
                                                      ({"command_directory": "usr/sbin"}, {}, "command_directory"),
                                                      ({}, {"python": "@python3"}, "python")])
def test_relative_programs_are_refused(main: dict[str, str], extra: dict[str, str], field: str) -> None:
    # '-', '@', '+', '!' and ':' before the program are flags to systemd, quoted or not ("-/bin/false" ignores failure).
    with pytest.raises(MasterCfError, match="not an absolute path") as info:
        build_classic_units(EDGE, main, jail_watch=["/etc/hosts"], extra=extra)
    assert info.value.field_name == field


def test_bad_instance_name() -> None:
    with pytest.raises(MasterCfError, match="cannot name the instance's paths and units"):
        build_classic_units(EDGE, {"multi_instance_name": "postfix-a b"})
    with pytest.raises(MasterCfError, match="'.' and '..'"):
        build_classic_units(EDGE, {"multi_instance_name": "postfix-.."})
    with pytest.raises(MasterCfError, match="cannot name"):
        assert ClassicInstance(name="postfix-.").prefix
    assert ClassicInstance(name="postfix-out-2").unit == "postfix-out\\x2d2-master.service"


def test_jail_units_only_when_chrooted_and_watched() -> None:
    watched = build_classic_units(EDGE, EDGE_MAIN, jail_watch=["/etc/resolv.conf", "/etc/hosts", "/etc/hosts"])
    path = watched.units["postfix-edge-jail.path"]
    assert path.count("PathChanged=") == 2 and "PathChanged=/etc/resolv.conf" in path
    service = watched.units["postfix-edge-jail.service"]
    assert "refresh /var/spool/postfix-edge" in service and "CapabilityBoundingSet=CAP_CHOWN\n" in service
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
    # docs/chroot.md lists these scores (systemd 252); before local/pipe/spawn relaxed only their needs,
    # they were 5.2 (local) and 6.8 (pipe, spawn, Debian's default master.cf).
    ("edge", EDGE, EDGE_MAIN, 3.0),
    ("delivery (local)", LOCAL_ONLY, {"compatibility_level": "3.6"}, 3.5),
    ("delivery (Debian default, local + pipe)", DEBIAN, {"compatibility_level": "3.6"}, 3.5),
    ("edge + pipe", EDGE_PIPE, {"compatibility_level": "3.6"}, 3.5),
    ("edge + spawn", EDGE_SPAWN, {"compatibility_level": "3.6"}, 3.5),
])
def test_exposure(name: str, text: str, main: dict[str, str], limit: float, tmp_path: Path,
                  capsys: pytest.CaptureFixture[str]) -> None:
    score = exposure(build_classic_units(text, main), tmp_path)
    with capsys.disabled():
        print(f"\nexposure {name}: {score}")
    assert score <= limit


@needs_analyze
def test_units_have_no_unknown_keys(tmp_path: Path) -> None:
    units = build_classic_units(EDGE, EDGE_MAIN, jail_watch=["/etc/hosts"])
    for name, text in units.units.items():
        (tmp_path / name).write_text(text)
    out = subprocess.run([ANALYZE or "systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
                         capture_output=True, text=True, check=False)
    assert not re.search(r"Unknown (key|section|lvalue)|Invalid|Failed to parse", out.stderr + out.stdout), out.stderr
