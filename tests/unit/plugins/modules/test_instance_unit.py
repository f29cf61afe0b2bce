"""mailfleet.postfix.instance_unit writing into a temporary unit directory.

postconf and systemctl are replaced (this machine does not run systemd); the files, masks, the
installed jail helper and the exposure score are real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from ansible.module_utils import basic

from ansible_collections.mailfleet.postfix.plugins.module_utils import _host, _host_package
from ansible_collections.mailfleet.postfix.plugins.modules import instance_unit as module
from ansible_collections.mailfleet.postfix.tests import fixture_files

ROOT = Path(__file__).resolve().parents[4]
DEBIAN = (ROOT / "tests/unit/plugins/module_utils/fixtures/debian-master.cf").read_text()
EDGE = "\n".join(line for line in DEBIAN.splitlines()
                 if not line.startswith(("local ", "virtual ", "maildrop ", "uucp ", "ifmail ", "bsmtp ",
                                         "scalemail-backend ", "mailman ", "  flags="))) + "\n"


class Exit(Exception):
    def __init__(self, result: dict[str, Any], failed: bool) -> None:
        super().__init__(result.get("msg", ""))
        self.result = result
        self.failed = failed


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    def exit_json(self: basic.AnsibleModule, **kwargs: Any) -> None:
        raise Exit(kwargs, False)

    def fail_json(self: basic.AnsibleModule, msg: str, **kwargs: Any) -> None:
        raise Exit({"msg": msg, **kwargs}, True)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    config = tmp_path / "postfix-edge"
    config.mkdir()
    (config / "master.cf").write_text(EDGE)
    params = {"multi_instance_name": "postfix-edge", "config_directory": str(config),
              "queue_directory": "/var/spool/postfix-edge", "data_directory": "/var/lib/postfix-edge",
              "compatibility_level": "3.6", "command_directory": "/usr/sbin"}
    monkeypatch.setattr(_host, "postconf_x", lambda run, config_dir, *names, **kw: dict(params))
    calls: list[tuple[str, ...]] = []
    enabled: set[str] = set()
    real_run_command = basic.AnsibleModule.run_command

    def run_command(self: basic.AnsibleModule, args: Any, **kwargs: Any) -> tuple[int, str, str]:
        if os.path.basename(args[0]) != "systemctl":
            if os.path.basename(args[0]) == "postfix":
                calls.append(tuple(args))
                return 1, "", "postfix/postfix-script: the Postfix mail system is not running"
            return real_run_command(self, args, **kwargs)
        words = tuple(a for a in args[1:] if a != "--")
        calls.append(words)
        if words[0] == "is-enabled":
            return (0, "enabled\n", "") if words[1] in enabled else (1, "disabled\n", "")
        if words[0] == "enable":
            enabled.add(words[1])
        if words[0] == "disable":
            enabled.discard(words[1])
        if words[0] == "show":
            return 0, "\n\n".join(f"Id={u}\nActiveState=inactive" for u in words[3:]), ""
        return 0, "", ""

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    units = tmp_path / "units"
    units.mkdir()
    yield {"config": config, "units": units, "libexec": tmp_path / "libexec", "calls": calls, "enabled": enabled}


def run(env: dict[str, Any], *, check: bool = False, diff: bool = False, **args: Any) -> Exit:
    payload = {"config_dir": str(env["config"]), "unit_dir": str(env["units"]), "libexec_dir": str(env["libexec"]),
               "state": "present", **args, "_ansible_check_mode": check, "_ansible_diff": diff}
    basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": payload}).encode()
    basic._ANSIBLE_PROFILE = "legacy"
    with pytest.raises(Exit) as info:
        module.main()
    return info.value


def ok(env: dict[str, Any], **kw: Any) -> dict[str, Any]:
    out = run(env, **kw)
    assert not out.failed, out.result["msg"]
    return out.result


def test_present_writes_units_mask_and_helper(env: dict[str, Any]) -> None:
    first = ok(env)
    units: Path = env["units"]
    assert first["changed"] and first["kind"] == "edge"
    assert first["unit"] == "postfix-edge-master.service"
    assert first["units"] == ["postfix-edge-master.service", "postfix-edge-jail.service", "postfix-edge-jail.path"]
    assert os.readlink(units / "postfix@postfix-edge.service") == "/dev/null"
    text = (units / "postfix-edge-master.service").read_text()
    assert f"ExecStart=/usr/sbin/postfix -c {env['config']} start" in text and "NoNewPrivileges=yes" in text
    assert "PathChanged=/etc/resolv.conf" in (units / "postfix-edge-jail.path").read_text()
    helper = env["libexec"] / "chroot-sync"
    assert helper.read_text().startswith(f"#!{sys.executable} -IS\n")
    assert os.stat(helper).st_mode & 0o777 == 0o755
    package = env["libexec"] / "mailfleet_postfix"
    for name, library in _host_package.modules().items():  # the whole package, as the collection has it
        assert (package / f"{name}.py").read_text() == Path(library.__file__ or "").read_text()
    assert (package / "__init__.py").read_text() == ""
    usage = subprocess.run([sys.executable, str(helper)], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "usage: chroot-sync refresh" in usage.stderr
    assert {"postfix-edge-master.service", "postfix-edge-jail.path"} <= env["enabled"]
    assert {d["directive"] for d in first["hardening"]} >= {"NoNewPrivileges", "ProtectHome", "CapabilityBoundingSet"}
    second = ok(env)
    assert not second["changed"] and second["files"] == []


def test_check_mode_predicts_and_writes_nothing(env: dict[str, Any]) -> None:
    predicted = ok(env, check=True, diff=True)
    assert predicted["changed"] and list(env["units"].iterdir()) == []
    assert any("[Service]" in d["after"] for d in predicted["diff"])
    real = ok(env)
    assert sorted(predicted["files"]) == sorted(real["files"])
    assert not ok(env, check=True)["changed"]


def test_exposure_is_measured(env: dict[str, Any]) -> None:
    result = ok(env, check=True)
    if result["exposure"] is None:
        pytest.skip("systemd-analyze --offline not available")
    assert result["exposure"] <= 4.0


def test_an_existing_debian_unit_file_is_not_overwritten(env: dict[str, Any]) -> None:
    (env["units"] / "postfix@postfix-edge.service").write_text("[Service]\nExecStart=/bin/true\n")
    out = run(env)
    assert out.failed and "is not a mask" in out.result["msg"]


def test_changed_master_cf_changes_the_unit(env: dict[str, Any]) -> None:
    ok(env)
    (env["config"] / "master.cf").write_text(DEBIAN)
    out = ok(env)
    assert out["changed"] and out["kind"] == "delivery"
    assert "NoNewPrivileges=no" in (env["units"] / "postfix-edge-master.service").read_text()


def test_no_chroot_no_jail_units(env: dict[str, Any]) -> None:
    ok(env)
    (env["config"] / "master.cf").write_text(EDGE.replace(" y ", " n "))
    out = ok(env)
    assert out["units"] == ["postfix-edge-master.service"]
    assert not (env["units"] / "postfix-edge-jail.path").exists()


def test_absent_removes_what_it_wrote(env: dict[str, Any]) -> None:
    ok(env)
    out = ok(env, state="absent")
    assert out["changed"]
    assert [p.name for p in env["units"].iterdir()] == []
    assert not ok(env, state="absent")["changed"]


def test_started_needs_running_systemd(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    real_isdir = os.path.isdir
    monkeypatch.setattr(module.os.path, "isdir", lambda p: False if p == "/run/systemd/system" else real_isdir(p))
    out = run(env, state="started")
    assert out.failed and "needs a running systemd" in out.result["msg"]


def test_disabled(env: dict[str, Any]) -> None:
    ok(env)
    out = ok(env, enabled=False)
    assert out["changed"] and "postfix-edge-master.service" not in env["enabled"]


def test_bad_master_cf(env: dict[str, Any]) -> None:
    (env["config"] / "master.cf").write_text("smtp inet n - y\n")
    out = run(env)
    assert out.failed and "line 1" in out.result["msg"]


def test_latin1_master_cf(env: dict[str, Any]) -> None:
    """Postfix reads master.cf as bytes: a Latin-1 comment and -o value neither crash nor change it."""
    raw = fixture_files.read(ROOT / "tests/unit/fixtures/master.cf/latin1.cf")
    (env["config"] / "master.cf").write_bytes(raw)
    first = ok(env)
    assert first["changed"] and (env["config"] / "master.cf").read_bytes() == raw
    (env["units"] / "postfix-edge-master.service").read_text(encoding="utf-8")
    assert not ok(env)["changed"]


def test_an_unknown_command_is_refused_unless_named(env: dict[str, Any]) -> None:
    ok(env)
    unit = env["units"] / "postfix-edge-master.service"
    before = unit.read_text()
    (env["config"] / "master.cf").write_text(EDGE + "smtp2 unix - - n - - smptd\n")
    out = run(env)
    assert out.failed and "command 'smptd' is not a Postfix daemon" in out.result["msg"]
    assert f"{env['config']}/master.cf line {EDGE.count(chr(10)) + 1}" in out.result["msg"]
    assert unit.read_text() == before  # nothing written
    (env["config"] / "master.cf").write_text(EDGE + "filter unix - n n - - my-filter\n")
    named = ok(env, custom_commands=["my-filter"])
    assert named["kind"] == "delivery" and "NoNewPrivileges=no" in unit.read_text()
    assert "PrivateDevices=yes" in unit.read_text()
    # Removing the units never depends on what master.cf says.
    assert ok(env, state="absent")["changed"] and list(env["units"].iterdir()) == []


def test_check_mode_reports_the_actions_the_real_run_takes(env: dict[str, Any],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_host, "booted", lambda: True)
    ok(env, check=True, state="started")
    acting = ("enable", "disable", "start", "stop", "restart", "daemon-reload")
    assert not [c for c in env["calls"] if c[0] in acting]  # check mode: only observations
    env["calls"].clear()
    ok(env, state="started")
    done = [" ".join(c) for c in env["calls"] if c[0] in acting]
    assert done == ["daemon-reload", "enable postfix-edge-master.service", "enable postfix-edge-jail.path",
                    "start postfix-edge-master.service", "start postfix-edge-jail.path"]


def test_a_failed_start_names_what_was_done_before_it(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_host, "booted", lambda: True)
    fake = basic.AnsibleModule.run_command

    def run_command(self: basic.AnsibleModule, args: Any, **kwargs: Any) -> tuple[int, str, str]:
        if list(args)[-1] == "postfix-edge-master.service" and "start" in args:
            return 1, "", "Job for postfix-edge-master.service failed.\n"
        return fake(self, args, **kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    failed = run(env, state="started")
    assert failed.failed
    assert "Job for postfix-edge-master.service failed" in failed.result["msg"]
    assert "done before it: write " in failed.result["msg"]
    assert failed.result["actions"][-1] == "systemctl start postfix-edge-master.service"
