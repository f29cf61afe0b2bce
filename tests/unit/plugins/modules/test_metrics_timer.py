"""mailfleet.postfix.metrics_timer writing into temporary directories; systemctl is a fake that
keeps the timer's state (this machine does not run systemd), the package and launcher are real."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils import basic

from ansible_collections.mailfleet.postfix.plugins.module_utils import _host, _status_timer
from ansible_collections.mailfleet.postfix.plugins.modules import metrics_timer as module

TIMER = "mailfleet-postfix-metrics.timer"


class Exit(Exception):
    def __init__(self, result: dict[str, Any], failed: bool) -> None:
        super().__init__(result.get("msg", ""))
        self.result = result
        self.failed = failed


class Systemd:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.enabled = self.active = False

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        if os.path.basename(argv[0]) != "systemctl":
            return _real(argv)  # compileall
        self.calls.append(argv[1:])
        verb = argv[1]
        if verb == "show":
            return 0, f"LoadState=loaded\nActiveState={'active' if self.active else 'inactive'}\n", ""
        if verb == "is-enabled":
            return (0, "enabled\n", "") if self.enabled else (1, "disabled\n", "")
        if verb == "enable":
            self.enabled = self.active = True
        if verb == "disable":
            self.enabled = self.active = False
        return 0, "", ""


def _real(argv: list[str]) -> tuple[int, str, str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def systemd(monkeypatch: pytest.MonkeyPatch) -> Systemd:
    def exit_json(self: basic.AnsibleModule, **kwargs: Any) -> None:
        raise Exit(kwargs, False)

    def fail_json(self: basic.AnsibleModule, msg: str, **kwargs: Any) -> None:
        raise Exit({"msg": msg, **kwargs}, True)

    fake = Systemd()
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda self, args, **kw: fake.run(list(args)))
    monkeypatch.setattr(_host, "booted", lambda: True)
    return fake


def call(tmp: Path, *, check: bool = False, diff: bool = False, **args: Any) -> Exit:
    payload = {"libexec_dir": str(tmp / "libexec"), "unit_dir": str(tmp / "units"),
               "path": str(tmp / "textfile" / "postfix.prom"), "python": sys.executable, **args,
               "_ansible_check_mode": check, "_ansible_diff": diff}
    basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": payload}).encode()
    basic._ANSIBLE_PROFILE = "legacy"
    with pytest.raises(Exit) as info:
        module.main()
    return info.value


def ok(tmp: Path, **kw: Any) -> dict[str, Any]:
    out = call(tmp, **kw)
    assert not out.failed, out.result["msg"]
    return out.result


def test_check_mode_predicts_the_real_run_then_nothing_changes(tmp_path: Path, systemd: Systemd) -> None:
    predicted = ok(tmp_path, check=True, diff=True)
    assert predicted["changed"] and not (tmp_path / "units").exists() and not systemd.enabled
    real = ok(tmp_path)
    assert real["actions"] == predicted["actions"] and real["actions"][-2:] == [
        "reload systemd", f"enable and start {TIMER}"]
    assert any(a.startswith("compile ") for a in real["actions"])
    service = (tmp_path / "units" / "mailfleet-postfix-metrics.service").read_text()
    assert f"--metrics {tmp_path}/textfile/postfix.prom --no-queue-details\n" in service
    assert f"ReadWritePaths={tmp_path}/textfile\n" in service
    assert "OnUnitInactiveSec=60s" in (tmp_path / "units" / TIMER).read_text()
    assert (tmp_path / "textfile").is_dir() and os.stat(tmp_path / "libexec" / "status").st_mode & 0o777 == 0o755
    again = ok(tmp_path)
    assert not again["changed"] and again["actions"] == []


def test_the_installed_launcher_runs_the_package_it_was_installed_with(tmp_path: Path, systemd: Systemd) -> None:
    ok(tmp_path)
    service = (tmp_path / "units" / "mailfleet-postfix-metrics.service").read_text()
    argv = next(line for line in service.splitlines() if line.startswith("ExecStart=")).split("=", 1)[1].split()
    assert argv[:4] == [sys.executable, "-I", "-S", f"{tmp_path}/libexec/status"]
    # The real launcher and package, isolated from this checkout. Without postconf on its PATH the
    # status fails, whatever this machine has installed, and says so; no file is written.
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env={"PATH": str(tmp_path)})
    assert done.returncode == 1 and done.stderr.startswith("mailfleet-postfix status: "), done.stderr
    assert not (tmp_path / "textfile" / "postfix.prom").exists()


def test_changing_the_path_rewrites_the_unit_and_removes_the_old_file(tmp_path: Path, systemd: Systemd) -> None:
    ok(tmp_path)
    old = tmp_path / "textfile" / "postfix.prom"
    old.write_text("# old figures\n")
    moved = ok(tmp_path, path=str(tmp_path / "other" / "mail.prom"), interval=300, queue_details=True)
    assert f"remove {old} (the previous metrics file)" in moved["actions"] and not old.exists()
    service = (tmp_path / "units" / "mailfleet-postfix-metrics.service").read_text()
    assert "--no-queue-details" not in service and "mail.prom" in service
    assert "reload systemd" in moved["actions"] and f"enable and start {TIMER}" not in moved["actions"]


def test_absent_stops_and_removes_units_and_file_but_keeps_the_package(tmp_path: Path, systemd: Systemd) -> None:
    ok(tmp_path)
    (tmp_path / "textfile" / "postfix.prom").write_text("x 1\n")
    gone = ok(tmp_path, state="absent")
    assert gone["actions"][0] == f"stop and disable {TIMER}" and not systemd.enabled
    assert not (tmp_path / "units" / TIMER).exists() and not (tmp_path / "textfile" / "postfix.prom").exists()
    assert (tmp_path / "libexec" / "mailfleet_postfix" / "_host.py").exists()
    assert not ok(tmp_path, state="absent")["changed"]


@pytest.mark.parametrize(("args", "message"), [
    ({"path": "/var/lib/x/metrics.txt"}, "ending in .prom"),
    ({"path": "/var/lib/x/a b.prom"}, "letters, digits"),
    ({"path": "/var/lib/%h.prom"}, "letters, digits"),
    ({"path": "relative.prom"}, "absolute"),
    ({"interval": 5}, "10 to 86400"),
    ({"python": "/usr/bin/python3 -c evil"}, "python"),
    ({"path": "/x.prom"}, "not a system directory"),
    ({"path": "/etc/mailfleet.prom"}, "not a system directory"),
    ({"path": "/var/lib/mailfleet.prom"}, "not a system directory"),
    ({"path": "/usr/local/share/m/x.prom"}, "not a system directory"),
])
def test_bad_values_are_refused_before_anything_is_written(
        tmp_path: Path, systemd: Systemd, args: dict[str, Any], message: str) -> None:
    out = call(tmp_path, **args)
    assert out.failed and message in out.result["msg"]
    assert not (tmp_path / "units").exists() and not (tmp_path / "libexec").exists() and not systemd.calls


def test_the_service_is_sandboxed_and_writes_only_the_metrics_directory() -> None:
    text = _status_timer.service_text(_status_timer.Wanted(state="present", path="/var/lib/m/postfix.prom"))
    assert "ProtectSystem=strict\nReadWritePaths=/var/lib/m\n" in text
    for line in ("NoNewPrivileges=yes", "PrivateNetwork=yes", "MemoryMax=256M", "TasksMax=32", "RestrictAddressFamilies=AF_UNIX", "ProtectHome=yes",
                 "CapabilityBoundingSet=CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_SETUID CAP_SETGID"):
        assert line + "\n" in text


def test_the_service_scores_as_a_sandboxed_root_service(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is missing")
    unit = tmp_path / "mailfleet-postfix-metrics.service"
    unit.write_text(_status_timer.service_text(_status_timer.Wanted(state="present", path="/var/lib/m/postfix.prom")))
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    if score is None:
        pytest.skip(f"systemd-analyze security --offline not available: {done.stderr.strip()[:200]}")
    assert float(score.group(1)) <= 2.0, done.stdout  # 1.7 with systemd 252: root, four capabilities, AF_UNIX


def test_an_interpreter_or_directory_another_user_may_change_is_refused(tmp_path: Path, systemd: Systemd) -> None:
    venv = tmp_path / "venv"
    venv.mkdir(mode=0o777)
    os.chmod(venv, 0o777)  # whatever the umask
    (venv / "python3").symlink_to(sys.executable)
    out = call(tmp_path, python=str(venv / "python3"))
    assert out.failed and "is not root's alone" in out.result["msg"] and not (tmp_path / "units").exists()


def test_a_metrics_directory_reached_through_a_link_is_refused(tmp_path: Path, systemd: Systemd) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "textfile").symlink_to(tmp_path / "real")
    out = call(tmp_path)  # path is textfile/postfix.prom
    assert out.failed and "symbolic link" in out.result["msg"] and not (tmp_path / "units").exists()
