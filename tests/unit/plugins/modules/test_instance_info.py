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

from ansible_collections.mailfleet.postfix.plugins.module_utils import _host, _masterless_generator, _status_observe
from ansible_collections.mailfleet.postfix.plugins.modules import instance_info as module

PRIMARY_CF = "smtp inet n - y - - smtpd\npickup unix n - y 60 1 pickup\n"
EDGE_CF = "smtp inet n - y - 1 postscreen\nsmtpd pass - - y - - smtpd\nsubmission inet n - y - - smtpd\n"
EDGE_UNITS = ("postfix-edge-smtp-inet.socket", "postfix-edge-smtp-inet.service", "postfix-edge-smtpd-pass.service",
              "postfix-edge-submission-inet.socket", "postfix-edge-submission-inet@.service")


class Exit(Exception):
    def __init__(self, result: dict[str, Any], failed: bool) -> None:
        super().__init__(result.get("msg", ""))
        self.result = result
        self.failed = failed


def deferred(arrival: int, reason: str) -> str:
    return json.dumps({"queue_name": "deferred", "queue_id": "A", "arrival_time": arrival,
                       "recipients": [{"address": "a@example.net", "delay_reason": reason}]}) + "\n"


class Host:
    """The fake host: what each command answers, and what was asked."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.calls: list[list[str]] = []
        self.streamed: list[list[str]] = []
        self.states: dict[str, dict[str, str]] = {}
        self.rows: list[list[str]] = []
        self.scores: dict[str, str] = {}
        self.queue_lines: dict[str, list[str]] = {}
        self.dirs: dict[str, dict[str, str]] = {}

    def instance(self, name: str, master_cf: str) -> Path:
        short = "default" if name == "-" else name[len("postfix-"):]
        config, spool = self.tmp / "etc" / short, self.tmp / "spool" / short
        config.mkdir(parents=True)
        (config / "main.cf").write_text("")
        (config / "master.cf").write_text(master_cf)
        for queue in ("maildrop", "incoming", "active", "deferred", "hold"):
            (spool / queue).mkdir(parents=True)
        self.dirs[str(config)] = {
            "multi_instance_name": "" if name == "-" else name, "queue_directory": str(spool),
            "data_directory": str(self.tmp / "data" / short), "command_directory": "/usr/sbin",
            "daemon_directory": "/usr/lib/postfix/sbin", "syslog_name": "postfix" if name == "-" else name,
            "maillog_file": "", "inet_interfaces": "all", "inet_protocols": "ipv4", "master_service_disable": "",
            "compatibility_level": "3.6", "known_tcp_ports": "smtp=25, submission=587", "default_process_limit": "100",
            "config_directory": str(config), "multi_instance_directories": "", "alternate_config_directories": "",
            "multi_instance_wrapper": "", "multi_instance_enable": "yes", "meta_directory": "/etc/postfix",
            "mail_owner": "postfix", "setgid_group": "postdrop"}
        return config

    def run(self, argv: Sequence[str]) -> tuple[int, str, str]:
        argv = list(argv)
        self.calls.append(argv)
        tool = os.path.basename(argv[0])
        if tool == "postconf" and argv[1] == "-dh":
            return 0, str(self.tmp / "etc" / "default") + "\n", ""
        if tool == "postconf":
            values = self.dirs[argv[2]]
            return 0, "".join(f"{n} = {values[n]}\n" for n in argv[4:] if n in values), ""
        if tool == "systemctl" and argv[1] == "list-units":
            return 0, "".join(" ".join(r) + " desc\n" for r in self.rows), ""
        if tool == "systemctl" and argv[1] == "show":
            names = argv[argv.index("--") + 1:]
            return 0, "\n\n".join("\n".join([f"Id={u}"] + [f"{k}={v}" for k, v in self.states.get(
                u, {"LoadState": "not-found", "ActiveState": "inactive"}).items()]) for u in names), ""
        if tool == "systemd-analyze":
            units = argv[argv.index("--") + 1:]
            return 0, "".join(f"→ Overall exposure level for {u}: {self.scores[u]} OK :-)\n" for u in units
                              if u in self.scores), ""
        raise AssertionError(f"unexpected command {argv}")

    def stream(self, argv: Sequence[str]) -> Iterator[str]:
        self.streamed.append(list(argv))
        yield from self.queue_lines.get(argv[2], [])


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    def exit_json(self: basic.AnsibleModule, **kwargs: Any) -> None:
        raise Exit(kwargs, False)

    def fail_json(self: basic.AnsibleModule, msg: str, **kwargs: Any) -> None:
        raise Exit({"msg": msg, **kwargs}, True)

    fake = Host(tmp_path)
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda self, args, **kw: fake.run(args))
    monkeypatch.setattr(_host, "stream_lines", fake.stream)
    monkeypatch.setattr(_host, "booted", lambda: True)
    monkeypatch.setattr(_status_observe.shutil, "which", lambda name, path=None: f"/usr/bin/{name}")
    monkeypatch.setattr(_masterless_generator, "CONF_DIR", str(tmp_path / "conf"))
    monkeypatch.setattr(_masterless_generator, "master_units",
                        lambda name, config_dir="", unit_dirs=None: (f"postfix@{name}.service",))
    monkeypatch.setattr(_status_observe, "current_units", lambda conf, state: dict.fromkeys(EDGE_UNITS, ""))
    (tmp_path / "conf").mkdir()
    yield fake


def two_instances(host: Host) -> None:
    """The primary in master mode under Debian's unit, healthy; postfix-edge master-less, one unit failed,
    mail deferred."""
    primary = host.instance("-", PRIMARY_CF)
    edge = host.instance("postfix-edge", EDGE_CF)
    host.dirs[str(primary)]["multi_instance_directories"] = str(edge)
    (host.tmp / "conf" / "edge.conf").write_text(f"config_directory = {edge}\n")
    up = {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "UnitFileState": "enabled"}
    host.states = {
        "postfix@-.service": up,
        "postfix-edge.target": {**up, "UnitFileState": "generated"},
        "postfix-edge-holder.service": up, "postfix-edge-holder.socket": {**up, "SubState": "listening"},
        "postfix-edge-smtp-inet.socket": {**up, "SubState": "listening"},
        "postfix-edge-submission-inet.socket": {**up, "SubState": "listening"},
        "postfix-edge-smtp-inet.service": up, "postfix-edge-smtpd-pass.service": up,
    }
    host.rows = [["postfix-edge-submission-inet@2-10.0.0.1:587-192.0.2.9:4000.service", "loaded", "failed", "failed"],
                 ["postfix@-.service", "loaded", "active", "running"]]
    host.scores = {"postfix@-.service": "9.6", "postfix-edge-smtp-inet.service": "2.1",
                   "postfix-edge-submission-inet@1.service": "2.3"}
    spool = Path(host.dirs[str(edge)]["queue_directory"])
    for n in range(3):
        (spool / "deferred" / "A").mkdir(exist_ok=True)
        (spool / "deferred" / "A" / f"A{n}").write_text("")
    (spool / "active" / "B").write_text("")
    refused = "connect to relay.internal[10.0.0.3]:25: Connection refused"
    host.queue_lines[str(edge)] = [deferred(1000, refused), deferred(500, refused), deferred(2000, "timeout"),
                                   json.dumps({"queue_name": "active", "arrival_time": 3000}) + "\n"]
    log = host.tmp / "mail.log"
    log.write_text("2026-12-06T10:00:00+00:00 mx postfix/smtp[1]: A: to=<a@b>, status=sent (250 ok)\n"
                   "2026-12-06T10:05:00+00:00 mx postfix-edge/smtp[2]: B: to=<a@b>, status=deferred (refused)\n")


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
