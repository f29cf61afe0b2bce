"""A fake host for the status code: postconf, systemctl and systemd-analyze answered by a fake
runner, postqueue -j by a fake stream; queue directories and the mail log are real files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _host, _masterless_generator, _status_observe

PRIMARY_CF = "smtp inet n - y - - smtpd\npickup unix n - y 60 1 pickup\n"
EDGE_CF = "smtp inet n - y - 1 postscreen\nsmtpd pass - - y - - smtpd\nsubmission inet n - y - - smtpd\n"
EDGE_UNITS = ("postfix-edge-smtp-inet.socket", "postfix-edge-smtp-inet.service", "postfix-edge-smtpd-pass.service",
              "postfix-edge-submission-inet.socket", "postfix-edge-submission-inet@.service")


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


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    """The fake host in place of the real one, for the module's runner and for local_run."""
    fake = Host(tmp_path)
    monkeypatch.setattr(_host, "local_run", fake.run)
    monkeypatch.setattr(_host, "stream_lines", fake.stream)
    monkeypatch.setattr(_host, "booted", lambda: True)
    monkeypatch.setattr(_status_observe.shutil, "which", lambda name, path=None: f"/usr/bin/{name}")
    monkeypatch.setattr(_masterless_generator, "CONF_DIR", str(tmp_path / "conf"))
    monkeypatch.setattr(_masterless_generator, "master_units",
                        lambda name, config_dir="", unit_dirs=None: (f"postfix@{name}.service",))
    monkeypatch.setattr(_status_observe, "current_units", lambda conf, state: dict.fromkeys(EDGE_UNITS, ""))
    (tmp_path / "conf").mkdir()
    return fake


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
