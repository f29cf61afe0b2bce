"""mailfleet.postfix.master run for real (in process, and once through ansible-playbook) on a temp config dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.mailfleet.postfix.tests.unit.plugins.modules.postfix_env import (
    ROOT,
    ConfigDir,
    make_config_dir,
    needs_postfix,
    needs_postfix_check,
    run_module,
    warnings_of,
)

SUBMISSION: dict[str, Any] = {
    "service": "submission",
    "type": "inet",
    "command": "smtpd",
    "options": {"syslog_name": "postfix/submission", "smtpd_tls_security_level": "may", "smtpd_sasl_auth_enable": None},
}


@pytest.fixture
def conf(tmp_path: Path) -> ConfigDir:
    return make_config_dir(tmp_path)


def _run(conf: ConfigDir, tmp_path: Path, *, check: bool = False, diff: bool = False, **args: Any) -> dict[str, Any]:
    return run_module("master", {"config_dir": str(conf.path), **args}, tmp=tmp_path, check=check, diff=diff)


def test_changed_then_not_changed(conf: ConfigDir, tmp_path: Path) -> None:
    first = _run(conf, tmp_path, **SUBMISSION)
    assert first["changed"] and first["changed_entries"] == ["submission/inet"]
    assert first["msg"] == f"{conf.master}: changed submission/inet"
    text = conf.master.read_text()
    assert "submission inet n       -       y       -       -       smtpd\n" in text
    assert "  -o smtpd_tls_security_level=may\n" in text and "smtpd_sasl_auth_enable" not in text
    second = _run(conf, tmp_path, **SUBMISSION)
    assert not second["changed"] and second["changed_entries"] == []
    assert second["msg"] == f"{conf.master}: no change needed"


def test_check_mode_predicts_the_real_run_and_writes_nothing(conf: ConfigDir, tmp_path: Path) -> None:
    before = conf.snapshot()
    predicted = _run(conf, tmp_path, check=True, **SUBMISSION)
    assert conf.snapshot() == before
    real = _run(conf, tmp_path, **SUBMISSION)
    assert (predicted["changed"], predicted["changed_entries"]) == (real["changed"], real["changed_entries"]) == (
        True, ["submission/inet"])
    assert predicted["msg"].endswith("would change submission/inet")
    assert not _run(conf, tmp_path, check=True, **SUBMISSION)["changed"]


def test_diff_shows_before_and_after(conf: ConfigDir, tmp_path: Path) -> None:
    before = conf.master.read_text()
    result = _run(conf, tmp_path, diff=True, service="pickup", type="unix", wakeup=30)
    diff = result["diff"]
    assert diff["before"] == before and diff["after"] == conf.master.read_text()
    assert diff["before_header"] == diff["after_header"] == str(conf.master)
    assert "pickup    unix  n       -       y       30      1       pickup\n" in diff["after"]
    assert "diff" not in _run(conf, tmp_path, service="pickup", type="unix", wakeup=30)


def test_check_mode_diff_equals_real_diff(conf: ConfigDir, tmp_path: Path) -> None:
    args: dict[str, Any] = {"service": "relay", "type": "unix", "state": "disabled"}
    predicted = _run(conf, tmp_path, check=True, diff=True, **args)["diff"]
    real = _run(conf, tmp_path, diff=True, **args)["diff"]
    assert predicted == real


def test_only_the_target_entry_changes(conf: ConfigDir, tmp_path: Path) -> None:
    before = conf.master.read_text().splitlines(keepends=True)
    _run(conf, tmp_path, service="smtp", type="inet", maxproc=50, options={"smtpd_tls_security_level": "may"})
    after = conf.master.read_text().splitlines(keepends=True)
    assert [x for x in after if x not in before] == [
        "smtp      inet  n       -       y       -       50      smtpd\n",
        "  -o smtpd_tls_security_level=may\n",
    ]
    assert [x for x in before if x not in after] == ["smtp      inet  n       -       y       -       -       smtpd\n"]


def test_states_disabled_present_absent(conf: ConfigDir, tmp_path: Path) -> None:
    original = conf.master.read_text()
    assert _run(conf, tmp_path, service="relay", type="unix", state="disabled")["changed"]
    assert "#        -o syslog_name=postfix/$service_name\n" in conf.master.read_text()
    assert not _run(conf, tmp_path, service="relay", type="unix", state="disabled")["changed"]
    assert _run(conf, tmp_path, service="relay", type="unix", state="present")["changed"]
    assert conf.master.read_text() == original
    assert _run(conf, tmp_path, service="relay", type="unix", state="absent")["changed"]
    assert "relay" not in conf.master.read_text()
    assert not _run(conf, tmp_path, service="relay", type="unix", state="absent")["changed"]


def test_bulk_entries_one_write(conf: ConfigDir, tmp_path: Path) -> None:
    entries = [
        {"service": "127.0.0.1:10025", "type": "inet", "unpriv": "n", "chroot": False, "maxproc": 10,
         "command": "smtpd", "options": {"content_filter": "", "smtpd_banner": "$myhostname filter"}},
        {"service": "maildrop", "type": "unix", "state": "absent"},
        {"service": "tlsmgr", "type": "unix", "wakeup": "600?"},
    ]
    result = _run(conf, tmp_path, entries=entries, backup=True)
    assert result["changed_entries"] == ["127.0.0.1:10025/inet", "maildrop/unix", "tlsmgr/unix"]
    assert Path(result["backup_file"]).read_text() != conf.master.read_text()
    assert conf.master.read_text().endswith(
        "127.0.0.1:10025 inet  n       n       n       -       10      smtpd\n"
        "  -o content_filter=\n"
        "  -o { smtpd_banner = $myhostname filter }\n"
    )
    assert not _run(conf, tmp_path, entries=entries)["changed"]


def test_mode_and_owner_are_kept(conf: ConfigDir, tmp_path: Path) -> None:
    conf.master.chmod(0o640)
    stat = conf.master.stat()
    _run(conf, tmp_path, service="pickup", type="unix", wakeup=30)
    after = conf.master.stat()
    assert (after.st_mode, after.st_uid, after.st_gid) == (stat.st_mode, stat.st_uid, stat.st_gid)


# --------------------------------------------------------------------------- bad input


def _refused(conf: ConfigDir, tmp_path: Path, **args: Any) -> str:
    before = conf.snapshot()
    for check in (True, False):
        result = _run(conf, tmp_path, check=check, **args)
        assert result["failed"] and not result.get("changed")
        assert conf.snapshot() == before, "a refused change must leave bytes and mtime alone"
    return str(result["msg"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"type": "tcp"}, "value of type must be one of: inet, unix, unix-dgram, fifo, pass, got: tcp"),
        ({"private": "maybe"}, "master.cf: field 'private' is 'maybe'; expected one of y, n, - (or a boolean)"),
        ({"private": True}, "field 'private' is 'y'; expected n (inet services cannot be private)"),
        ({"wakeup": "soon"}, "field 'wakeup' is 'soon'; expected a number of seconds, optionally followed by '?', or '-'"),
        ({"wakeup": -5}, "field 'wakeup' is '-5'"),
        ({"maxproc": "-1"}, "field 'maxproc' is '-1'; expected a number of processes (0 = no limit) or '-'"),
        ({"maxproc": "many"}, "field 'maxproc' is 'many'"),
        ({"options": {"smtpd_banner": "{ open"}}, "option 'smtpd_banner' value '{ open' has unbalanced braces"),
        ({"service": "brand-new", "command": None}, "entry 'brand-new/inet' does not exist; 'command' is required to create it"),
    ],
)
def test_bad_arguments_are_refused(conf: ConfigDir, tmp_path: Path, args: dict[str, Any], message: str) -> None:
    assert message in _refused(conf, tmp_path, **{"service": "smtp", "type": "inet", "command": "smtpd", **args})


def test_bad_bulk_entry_names_its_index(conf: ConfigDir, tmp_path: Path) -> None:
    entries = [{"service": "pickup", "type": "unix", "wakeup": 30}, {"service": "qmgr", "type": "unix", "maxproc": "x"}]
    assert f"{conf.master}: entries[1] (qmgr/unix): field 'maxproc' is 'x'" in _refused(conf, tmp_path, entries=entries)


_HEAD = "smtp      inet  n       -       y       -       -       smtpd\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_HEAD + "x tcp n - y - - smtpd\n", "line 2: field 'type' is 'tcp'; expected one of inet, unix, unix-dgram, fifo, pass"),
        (_HEAD + "x unix n - y - -\n", "line 2: field 'command' is missing"),
        (_HEAD + "x unix maybe - y - - smtp\n", "line 2: field 'private' is 'maybe'; expected one of y, n, -"),
        (_HEAD + "x unix - - y - -3 smtp\n", "line 2: field 'maxproc' is '-3'"),
        (_HEAD + "x unix - - y 5s - smtp\n", "line 2: field 'wakeup' is '5s'"),
        (_HEAD + "  -o\n", "line 2: '-o' without a value"),
        (_HEAD + "  -o { smtpd_banner = x\n", "line 2: missing '}'"),
    ],
)
def test_bad_master_cf_names_line_and_field(conf: ConfigDir, tmp_path: Path, text: str, message: str) -> None:
    conf.master.write_text(text)
    os.utime(conf.master, (1_600_000_000, 1_600_000_000))
    msg = _refused(conf, tmp_path, service="pickup", type="unix", command="pickup")
    assert msg.startswith(f"{conf.master} line ") and message in msg


@pytest.mark.parametrize("text", [
    "  -o stray=1\n" + _HEAD,  # Postfix skips the line with a warning
    _HEAD + "25 inet n - y - - smtpd\n",  # master(8) runs the last entry with a warning
])
def test_what_postfix_accepts_does_not_block_edits(conf: ConfigDir, tmp_path: Path, text: str) -> None:
    conf.master.write_text(text)
    result = _run(conf, tmp_path, service="pickup", type="unix", command="pickup")
    assert result["changed"] and conf.master.read_text().startswith(text)


@pytest.mark.parametrize(("spec", "message"), [
    ({"service": "25", "type": "inet", "command": "smtpd"}, "line 2: duplicate entry for service '25' type 'inet' (also at line 1)"),
])
def test_an_edit_that_creates_a_duplicate_is_refused(conf: ConfigDir, tmp_path: Path, spec: dict[str, str],
                                                     message: str) -> None:
    conf.master.write_text(_HEAD)
    msg = _refused(conf, tmp_path, **spec)
    assert message in msg and conf.master.read_text() == _HEAD


def test_missing_config_dir(tmp_path: Path) -> None:
    result = run_module("master", {"config_dir": str(tmp_path / "nope"), "service": "smtp", "type": "inet"}, tmp=tmp_path)
    assert result["failed"] and "does not exist; expected a Postfix config directory" in result["msg"]


def test_not_a_postfix_config_dir(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "master.cf").write_text(_HEAD)
    result = run_module("master", {"config_dir": str(tmp_path / "etc"), "service": "smtp", "type": "inet"}, tmp=tmp_path)
    assert result["failed"] and result["msg"].endswith("is not a Postfix config directory: no main.cf in it")


def test_argument_combinations(conf: ConfigDir, tmp_path: Path) -> None:
    assert "mutually exclusive" in _run(conf, tmp_path, service="smtp", type="inet", entries=[])["msg"]
    assert "one of the following is required: entries, service" in _run(conf, tmp_path)["msg"]
    assert "parameters are required together: service, type" in _run(conf, tmp_path, service="smtp")["msg"]


@needs_postfix
def test_postfix_refusal_is_returned(conf: ConfigDir, tmp_path: Path) -> None:
    msg = _refused(conf, tmp_path, service="smtp", type="inet", options={"mailfleet_no_such_parameter": "1"})
    assert msg.startswith("postconf -M refused the new configuration: ")
    assert f"{conf.master}: unused parameter: mailfleet_no_such_parameter=1" in msg


@needs_postfix
def test_unknown_daemon_is_refused_and_nothing_written(conf: ConfigDir, tmp_path: Path) -> None:
    before = conf.snapshot()
    for check in (True, False):
        result = run_module("master", {"config_dir": str(conf.path), "service": "broken", "type": "unix",
                                       "command": "mailfleet-no-such-daemon"}, tmp=tmp_path, check=check)
        assert result.get("failed"), result
        assert "field 'command' is 'mailfleet-no-such-daemon'" in result["msg"]
        assert "mailfleet-no-such-daemon is no program" in result["msg"]
        assert conf.snapshot() == before


@needs_postfix_check
def test_postfix_check_failure_is_returned(conf: ConfigDir, tmp_path: Path) -> None:
    conf.main.write_text(conf.main.read_text() + "maillog_file = /var/log/mailfleet-test.log\n")
    os.utime(conf.main, (1_600_000_000, 1_600_000_000))
    msg = _refused(conf, tmp_path, service="postlog", type="unix-dgram", state="absent")
    assert msg.startswith("postfix check refused the new configuration: ")
    assert "missing 'postlog' service in master.cf" in msg
    assert os.listdir(conf.queue) == []


@needs_postfix_check
def test_checks_are_reported(conf: ConfigDir, tmp_path: Path) -> None:
    result = _run(conf, tmp_path, service="pickup", type="unix", wakeup=30)
    assert result["checks"] == [
        f"postconf -c {conf.path} -M: Postfix parsed the staged master.cf",
        f"postfix -c {conf.path} check: passed on the staged copy",
        "daemon_directory programs: /usr/lib/postfix/sbin has the command of every changed entry",
    ]
    assert not warnings_of(result)
    assert os.listdir(conf.queue) == []


# --------------------------------------------------------------------------- through ansible itself

PLAYBOOK = """
- name: master module, end to end
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Predict
      mailfleet.postfix.master: &args
        config_dir: "{{ config_dir }}"
        service: submission
        type: inet
        command: smtpd
        options: {syslog_name: postfix/submission, smtpd_tls_security_level: encrypt}
      check_mode: true
      register: predicted
    - name: Apply
      mailfleet.postfix.master: *args
      register: first
    - name: Apply again
      mailfleet.postfix.master: *args
      register: second
    - name: Report
      ansible.builtin.copy:
        content: "{{ {'predicted': predicted.changed, 'first': first.changed, 'second': second.changed} | to_json }}"
        dest: "{{ report }}"
        mode: "0644"
"""


@pytest.mark.skipif(shutil.which("ansible-playbook", path=str(ROOT / ".venv" / "bin")) is None, reason="no ansible-playbook")
def test_through_ansible_playbook(conf: ConfigDir, tmp_path: Path) -> None:
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    report = tmp_path / "report.json"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"), ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"), ANSIBLE_REMOTE_TEMP=str(tmp_path / "ansible-remote"))
    run = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"),
         "-e", f"config_dir={conf.path} report={report} ansible_python_interpreter={sys.executable}"],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(report.read_text()) == {"predicted": True, "first": True, "second": False}
    assert "  -o smtpd_tls_security_level=encrypt\n" in conf.master.read_text()
