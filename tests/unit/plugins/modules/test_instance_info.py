"""mailfleet.postfix.instance_info over a fake host: postconf, systemctl and systemd-analyze answered
by a fake runner, postqueue -j by a fake stream; queue directories and the mail log are real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest
from ansible.module_utils import basic

from ansible_collections.mailfleet.postfix.plugins.module_utils import _host
from ansible_collections.mailfleet.postfix.plugins.modules import instance_info as module
from ansible_collections.mailfleet.postfix.tests.unit.plugins.module_utils.status_host import (
    PRIMARY_CF,
    Host,
    install,
    two_instances,
)


class Exit(Exception):
    def __init__(self, result: dict[str, Any], failed: bool) -> None:
        super().__init__(result.get("msg", ""))
        self.result = result
        self.failed = failed


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    def exit_json(self: basic.AnsibleModule, **kwargs: Any) -> None:
        raise Exit(kwargs, False)

    def fail_json(self: basic.AnsibleModule, msg: str, **kwargs: Any) -> None:
        raise Exit({"msg": msg, **kwargs}, True)

    fake = install(tmp_path, monkeypatch)
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda self, args, **kw: fake.run(args))
    yield fake


def call(host: Host, *, check: bool = False, diff: bool = False, **args: Any) -> Exit:
    payload = {"mail_logs": [str(host.tmp / "mail.log")], **args, "_ansible_check_mode": check, "_ansible_diff": diff}
    basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": payload}).encode()
    basic._ANSIBLE_PROFILE = "legacy"
    with pytest.raises(Exit) as info:
        module.main()
    return info.value


def ok(host: Host, **kw: Any) -> dict[str, Any]:
    out = call(host, **kw)
    assert not out.failed, out.result["msg"]
    return out.result


def test_every_instance_in_both_modes_problems_first(host: Host) -> None:
    two_instances(host)
    result = ok(host, check=True)
    assert result["changed"] is False and result["metrics_path"] is None
    edge, primary = result["instances"]  # the degraded edge first
    assert edge["name"] == "postfix-edge" and edge["mode"] == "masterless" and edge["supervisor"] == "postfix-edge.target"
    assert edge["running"] and edge["enabled"] and edge["health"] == "degraded" and edge["severity"] == 1
    assert edge["failed_units"] == ["postfix-edge-submission-inet@2-10.0.0.1:587-192.0.2.9:4000.service"]
    assert edge["problems"] == ["failed units: postfix-edge-submission-inet@2-10.0.0.1:587-192.0.2.9:4000.service"]
    assert edge["queues"] == {"maildrop": 0, "incoming": 0, "active": 1, "deferred": 3, "hold": 0}
    assert edge["queue_source"] == "directories" and edge["queue_total"] == 4
    assert edge["oldest_deferred"] == "1970-01-01T00:08:20+00:00" and edge["oldest_deferred_age"] > 0
    assert edge["deferral_reasons"] == [
        {"reason": "connect to relay.internal[10.0.0.3]:25: Connection refused", "recipients": 2},
        {"reason": "timeout", "recipients": 1}]
    assert edge["last_delivery"] is None  # the edge's only line is a deferral
    assert edge["exposure"] == {"postfix-edge-smtp-inet.service": 2.1, "postfix-edge-submission-inet@1.service": 2.3}
    assert edge["exposure_max"] == 2.3
    assert [(x["service"], x["command"], x["port"]) for x in edge["listeners"]] == [
        ("smtp", "postscreen", "25"), ("submission", "smtpd", "587")]
    assert "postfix-edge-holder.socket" in [u["name"] for u in edge["units"]]

    assert primary["name"] == "-" and primary["mode"] == "master" and primary["supervisor"] == "postfix@-.service"
    assert primary["running"] and primary["enabled"] and primary["health"] == "ok" and primary["problems"] == []
    assert primary["last_delivery"] == "2026-12-06T10:00:00+00:00" and primary["mail_log"].endswith("mail.log")
    assert primary["exposure"] == {"postfix@-.service": 9.6}
    assert [u["name"] for u in primary["units"]] == ["postfix@-.service"]
    # read-only: nothing but postconf, systemctl show/list-units and systemd-analyze security ran
    assert {(os.path.basename(c[0]), c[1]) for c in host.calls} <= {
        ("postconf", "-dh"), ("postconf", "-c"), ("systemctl", "list-units"), ("systemctl", "show"),
        ("systemd-analyze", "security")}
    assert sorted(s[1:] for s in host.streamed) == sorted(["-c", d, "-j"] for d in host.dirs)


def test_a_stopped_instance_is_down_and_first(host: Host) -> None:
    two_instances(host)
    host.states["postfix@-.service"] = {"LoadState": "loaded", "ActiveState": "failed", "SubState": "failed",
                                        "UnitFileState": "enabled"}
    primary = ok(host)["instances"][0]
    assert primary["name"] == "-" and primary["health"] == "down" and primary["severity"] == 2
    assert primary["problems"] == ["not running", "failed units: postfix@-.service"]


def test_a_pool_instance_in_a_restart_loop_is_asked_for_its_restarts(host: Host) -> None:
    two_instances(host)
    looping = "postfix-edge-submission-inet@1.service"
    host.rows.append([looping, "loaded", "activating", "start-pre"])
    host.rows.append(["postfix-edge-smtp-inet@1.service", "loaded", "inactive", "dead"])  # idle: not asked
    host.states[looping] = {"LoadState": "loaded", "ActiveState": "activating", "SubState": "start-pre",
                            "NRestarts": "6"}
    edge = ok(host)["instances"][0]
    assert edge["health"] == "degraded"
    assert f"restarting after abnormal exits: {looping}" in edge["problems"]
    asked = [c for c in host.calls if c[:2] == ["systemctl", "show"]]
    assert any(looping in c for c in asked) and not any("postfix-edge-smtp-inet@1.service" in c for c in asked)
    assert "NRestarts" in asked[0][3]


def test_counts_only_without_postqueue_and_one_instance(host: Host) -> None:
    two_instances(host)
    result = ok(host, queue_details=False, exposure=False, instances=["postfix-edge"])
    (edge,) = result["instances"]
    assert edge["queues"]["deferred"] == 3 and edge["deferral_reasons"] == [] and edge["oldest_deferred"] is None
    assert edge["exposure"] == {} and edge["exposure_max"] is None
    assert host.streamed == [] and not any(os.path.basename(c[0]) == "systemd-analyze" for c in host.calls)


def test_postqueue_failure_is_reported_not_fatal(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    two_instances(host)

    def broken(argv: Sequence[str]) -> Iterator[str]:
        if argv:
            raise _host.CommandError("postqueue -j failed: fatal: bad queue")
        yield ""

    monkeypatch.setattr(_host, "stream_lines", broken)
    edge = ok(host)["instances"][0]
    assert "postqueue -j failed: fatal: bad queue" in edge["problems"] and edge["queues"]["deferred"] == 3


def test_metrics_file_written_atomically_and_not_in_check_mode(host: Host) -> None:
    two_instances(host)
    path = host.tmp / "textfile" / "mailfleet_postfix.prom"
    predicted = ok(host, check=True, diff=True, metrics_path=str(path))
    assert predicted["changed"] and predicted["metrics_path"] == str(path) and not path.exists()
    assert "mailfleet_postfix_up" in predicted["diff"][0]["after"]
    written = ok(host, metrics_path=str(path))
    assert written["changed"] and os.stat(path).st_mode & 0o777 == 0o644
    text = path.read_text()
    assert 'mailfleet_postfix_queue_messages{postfix_instance="edge",queue="deferred"} 3' in text
    assert 'mailfleet_postfix_up{postfix_instance="default"} 1' in text
    assert os.listdir(path.parent) == ["mailfleet_postfix.prom"]  # no temporary file left
    if shutil.which("promtool"):
        done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_metrics_path_that_is_a_directory_fails(host: Host) -> None:
    two_instances(host)
    (host.tmp / "dir.prom").mkdir()
    out = call(host, metrics_path=str(host.tmp / "dir.prom"))
    assert out.failed and "cannot write" in out.result["msg"] and out.result["instances"]


def test_without_postfix_the_module_fails_with_a_hint(host: Host) -> None:
    out = call(host)  # no main.cf in the primary directory
    assert out.failed and "is Postfix installed?" in out.result["msg"]


def test_a_stopped_master_unit_is_down_although_its_jail_watch_is_active(host: Host) -> None:
    # Found in the fleet scenario: the active .path unit of the jail counted as the running master.
    host.instance("-", PRIMARY_CF)
    up = {"LoadState": "loaded", "ActiveState": "active", "SubState": "waiting", "UnitFileState": "enabled"}
    host.states = {"postfix-default-master.service": {**up, "ActiveState": "inactive", "SubState": "dead"},
                   "postfix-default-jail.path": up,
                   "postfix-default-jail.service": {**up, "ActiveState": "inactive", "SubState": "dead"}}
    (primary,) = ok(host)["instances"]
    assert primary["mode"] == "master" and primary["supervisor"] == "postfix-default-master.service"
    assert not primary["running"] and primary["health"] == "down" and primary["severity"] == 2
    assert "postfix-default-jail.path" in [u["name"] for u in primary["units"]]
