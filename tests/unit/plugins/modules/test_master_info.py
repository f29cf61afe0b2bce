"""mailfleet.postfix.master_info run for real (in process) on a temp config dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ansible_collections.mailfleet.postfix.tests.unit.plugins.modules.postfix_env import (
    ConfigDir,
    make_config_dir,
    run_module,
    warnings_of,
)


def _info(conf: ConfigDir, tmp_path: Path, *, check: bool = False) -> dict[str, Any]:
    return run_module("master_info", {"config_dir": str(conf.path)}, tmp=tmp_path, check=check)


def _by_key(result: dict[str, Any]) -> dict[tuple[str, str, bool], dict[str, Any]]:
    return {(e["service"], e["type"], e["enabled"]): e for e in result["entries"]}


@pytest.fixture
def conf(tmp_path: Path) -> ConfigDir:
    return make_config_dir(tmp_path, master="grammar.cf")


def test_every_entry_with_all_fields(conf: ConfigDir, tmp_path: Path) -> None:
    result = _info(conf, tmp_path)
    assert not result["changed"] and result["path"] == str(conf.master)
    assert len(result["entries"]) == 17
    smtps = _by_key(result)[("smtps", "inet", False)]
    assert smtps == {
        "service": "smtps", "type": "inet", "private": "n", "unpriv": "-", "chroot": "y", "wakeup": "-", "maxproc": "-",
        "command": "smtpd", "args": [], "options": {"syslog_name": "postfix/smtps", "smtpd_tls_wrappermode": "yes"},
        "enabled": False, "line": 32,
        "raw": "#smtps     inet  n       -       y       -       -       smtpd\n#  -o syslog_name=postfix/smtps\n"
               "#  -o smtpd_tls_wrappermode=yes\n",
        "effective": {"private": False, "unpriv": True, "chroot": True, "wakeup": 0, "wakeup_conditional": False,
                      "maxproc": 100, "runs": False},
    }


def test_effective_view(conf: ConfigDir, tmp_path: Path) -> None:
    result = _info(conf, tmp_path)
    assert result["defaults"] == {"compatibility_level": "3.6", "default_process_limit": 100, "chroot": False}
    entries = _by_key(result)
    assert entries[("tlsmgr", "unix", True)]["effective"] == {
        "private": True, "unpriv": True, "chroot": True, "wakeup": 1000, "wakeup_conditional": True, "maxproc": 1,
        "runs": True}
    flush = entries[("flush", "unix", True)]["effective"]
    assert (flush["wakeup"], flush["wakeup_conditional"], flush["maxproc"]) == (0, False, 0)
    assert entries[("qmgr", "fifo", True)]["effective"]["wakeup_conditional"] is False
    postlog = entries[("postlog", "unix-dgram", True)]["effective"]
    assert (postlog["private"], postlog["unpriv"], postlog["chroot"]) == (False, True, False)


def test_defaults_follow_main_cf(conf: ConfigDir, tmp_path: Path) -> None:
    text = conf.main.read_text().replace("compatibility_level = 3.6\n", "")
    conf.main.write_text(text + "default_process_limit = 42\n")
    result = _info(conf, tmp_path)
    assert result["defaults"] == {"compatibility_level": "0", "default_process_limit": 42, "chroot": True}
    entries = _by_key(result)
    assert entries[("lmtp", "unix", True)]["effective"]["maxproc"] == 42
    assert entries[("2525", "inet", True)]["effective"]["chroot"] is True  # written as 'y'
    assert entries[("postscreen-pass", "pass", True)]["effective"]["chroot"] is True  # '-' with level 0


def test_check_mode_and_warnings(conf: ConfigDir, tmp_path: Path) -> None:
    conf.master.write_text("  -o stray=1\nx unix - - y - - smtp\nx unix - - n - - smtp\n")
    result = _info(conf, tmp_path, check=True)
    assert [e["effective"]["runs"] for e in result["entries"]] == [False, True]  # the last one wins
    assert warnings_of(result) == [
        f"{conf.master} line 1: continuation line before any entry; Postfix ignores it",
        f"{conf.master} line 3: duplicate master.cf entry for service 'x unix' (also at line 2); "
        "master(8) uses the last one, line 3, and ignores line 2",
    ]


@pytest.mark.parametrize(("setting", "runs"), [
    ("master_service_disable = inet", [False, True]),
    ("master_service_disable = SMTP/INET", [False, True]),  # match_service.c compares without case
    ("inet_protocols =", [False, True]),
    ("master_service_disable = !smtp/inet inet", [True, True]),
])
def test_which_entries_run(conf: ConfigDir, tmp_path: Path, setting: str, runs: list[bool]) -> None:
    conf.master.write_text("smtp inet n - y - - smtpd\nx unix - - n - - smtp\n")
    conf.main.write_text(conf.main.read_text() + setting + "\n")
    assert [e["effective"]["runs"] for e in _info(conf, tmp_path)["entries"]] == runs


@pytest.mark.parametrize(("setting", "field"), [
    ("compatibility_level = 3.x", "compatibility_level"),
    ("inet_protocols = ipv5", "inet_protocols"),
])
def test_facts_master_refuses_fail_the_module(conf: ConfigDir, tmp_path: Path, setting: str, field: str) -> None:
    conf.main.write_text(conf.main.read_text() + setting + "\n")
    result = _info(conf, tmp_path)
    assert result["failed"] and field in result["msg"] and "master(8) refuses to start" in result["msg"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x tcp - - y - - smtp\n", "line 1: field 'type' is 'tcp'; expected one of inet, unix, unix-dgram, fifo, pass"),
        ("x unix - - y - -\n", "line 1: field 'command' is missing"),
        ("x unix - - y - - smtp\n  -o\n", "line 2: '-o' without a value"),
    ],
)
def test_invalid_master_cf_fails_with_line_and_field(conf: ConfigDir, tmp_path: Path, text: str, message: str) -> None:
    conf.master.write_text(text)
    result = _info(conf, tmp_path)
    assert result["failed"] and result["msg"].startswith(str(conf.master)) and message in result["msg"]


def test_missing_config_dir(tmp_path: Path) -> None:
    result = run_module("master_info", {"config_dir": str(tmp_path / "none")}, tmp=tmp_path)
    assert result["failed"] and "does not exist" in result["msg"]
