"""The hardening table: run models, delivery exceptions, measured exposure."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _systemd_sandbox
from ansible_collections.mailfleet.postfix.plugins.module_utils._masterless_units import Instance, build_units
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_semantics import DAEMONS, PROXYWRITE

DEBIAN = (Path(__file__).parent / "fixtures" / "debian-master.cf").read_text()
PATHS = _systemd_sandbox.Paths("/var/spool/postfix", "/var/lib/postfix")


def settings(kind: str, *, owner: bool = False, keep_chroot: bool = False, paths: _systemd_sandbox.Paths = PATHS) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in _systemd_sandbox.directives(kind, owner=owner, keep_chroot=keep_chroot, paths=paths,
                                                   mail_owner="postfix", mail_group="postfix"):
        out.setdefault(name, []).append(value)
    return out


def test_every_daemon_kind_has_a_profile() -> None:
    assert {d.kind for d in DAEMONS.values()} | {PROXYWRITE.kind} <= set(_systemd_sandbox.PROFILES)


def test_owner_model_has_no_capabilities() -> None:
    got = settings("network", owner=True)
    assert got["User"] == ["postfix"]
    assert got["CapabilityBoundingSet"] == [""]
    assert got["SystemCallFilter"] == ["@system-service", "~@privileged"]
    assert got["NoNewPrivileges"] == ["yes"]


def test_root_model_keeps_what_u_needs() -> None:
    got = settings("queue")
    assert "User" not in got
    assert got["CapabilityBoundingSet"] == ["CAP_SETUID CAP_SETGID CAP_DAC_OVERRIDE"]
    assert got["IPAddressDeny"] == ["any"]
    assert got["ReadWritePaths"] == ["-/var/spool/postfix -/var/lib/postfix"]
    chroot = settings("queue", keep_chroot=True)
    assert "CAP_SYS_CHROOT" in chroot["CapabilityBoundingSet"][0]
    assert "chroot" in chroot["SystemCallFilter"]


def test_postfix_daemons_may_probe_ipv6_and_netlink() -> None:
    for kind in ("queue", "network", "maps", "log", "virtual", "local"):
        assert settings(kind)["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"]


@pytest.mark.parametrize("kind", ["local", "command"])
def test_delivery_to_users_keeps_what_user_programs_need(kind: str) -> None:
    got = settings(kind)
    assert got["ProtectHome"] == ["no"]
    assert got["ProtectSystem"] == ["full"]
    for absent in ("NoNewPrivileges", "RestrictSUIDSGID", "MemoryDenyWriteExecute", "SystemCallFilter"):
        assert absent not in got
    assert "CAP_KILL" in got["CapabilityBoundingSet"][0]


def test_pipe_keeps_devices_and_clock() -> None:
    got = settings("command")
    assert got["PrivateDevices"] == ["no"]
    assert "ProtectClock" not in got  # it would add a device ACL
    assert "RestrictAddressFamilies" not in got


@pytest.mark.parametrize(
    ("base", "system", "home"),
    [("/var/mail/vhosts", "strict", "yes"), ("/home/vmail", "strict", "no"), ("", "full", "yes")],
)
def test_virtual_writes_only_its_mailbox_base(base: str, system: str, home: str) -> None:
    got = settings("virtual", paths=_systemd_sandbox.Paths("/var/spool/postfix", "/var/lib/postfix", mailbox_base=base))
    assert got["ProtectSystem"] == [system]
    assert got["ProtectHome"] == [home]
    if base:
        assert base in got["ReadWritePaths"][0]
    assert got["NoNewPrivileges"] == ["yes"]


@pytest.mark.parametrize(("value", "expected"), [("/var/vmail/", "/var/vmail"), ("$x/y", ""), ("rel", ""), ("", "")])
def test_writable_target(value: str, expected: str) -> None:
    assert _systemd_sandbox.writable_target(value) == expected


def _exposure(tmp_path: Path, name: str, content: str) -> float:
    unit = tmp_path / name
    unit.write_text(content)
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                         capture_output=True, text=True, check=False).stdout
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    assert match, out
    return float(match.group(1))


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_measured_exposure(tmp_path: Path) -> None:
    units = build_units(DEBIAN, Instance()).units
    scores = {name: _exposure(tmp_path, name, units[name]) for name in (
        "postfix-default-smtp-inet@.service", "postfix-default-qmgr-unix.service",
        "postfix-default-cleanup-unix@.service", "postfix-default-local-unix@.service",
        "postfix-default-mailman-unix@.service")}
    assert scores["postfix-default-smtp-inet@.service"] <= 2.0
    assert scores["postfix-default-qmgr-unix.service"] <= 2.0
    assert scores["postfix-default-cleanup-unix@.service"] <= 2.5
    # Documented in docs/systemd.md: delivery to users cannot go as low.
    assert scores["postfix-default-local-unix@.service"] <= 5.5
    assert scores["postfix-default-mailman-unix@.service"] <= 7.0
