"""An instance's status from what was observed: mode, units, health, exposure, order."""

from __future__ import annotations

from typing import Any

from ansible_collections.mailfleet.postfix.plugins.module_utils import _status_report as status
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_queue import summarize

EDGE_CF = ("smtp inet n - y - 1 postscreen\nsmtpd pass - - y - - smtpd\n"
           "127.0.0.1:10025 inet n - n - - smtpd\nsubmission inet n - y - - smtpd\n")
PARAMS = {"queue_directory": "/var/spool/postfix-edge", "inet_interfaces": "all", "inet_protocols": "ipv4",
          "compatibility_level": "3.6"}
ACTIVE = {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "UnitFileState": "generated"}


def seen(**kw: Any) -> status.InstanceSeen:
    values: dict[str, Any] = {
        "name": "postfix-edge", "config_directory": "/etc/postfix-edge", "queue_directory": "/var/spool/postfix-edge",
        "params": dict(PARAMS), "master_cf": EDGE_CF, "masterless": True,
        "stored_units": ("postfix-edge-smtp-inet.socket", "postfix-edge-smtp-inet.service",
                         "postfix-edge-submission-inet.socket", "postfix-edge-submission-inet@.service"),
        "states": {"postfix-edge.target": ACTIVE, "postfix-edge-holder.service": ACTIVE,
                   "postfix-edge-smtp-inet.socket": {**ACTIVE, "SubState": "listening"},
                   "postfix-edge-submission-inet.socket": {**ACTIVE, "SubState": "listening"}},
        "rows": [], "master_units": ("postfix-edge-master.service", "postfix@postfix-edge.service"), "master_pid": None,
        "queue": None, "queue_error": None, "last_delivery": None, "log": None, "exposure": {}}
    values.update(kw)
    return status.InstanceSeen(**values)


def test_listeners_and_which_face_the_network() -> None:
    got = status.listeners(EDGE_CF, PARAMS, origin="master.cf")
    assert [(x["service"], x["command"], x["address"], x["port"], x["scope"]) for x in got] == [
        ("smtp", "postscreen", "*", "25", "wildcard"), ("127.0.0.1:10025", "smtpd", "127.0.0.1", "10025", "loopback"),
        ("submission", "smtpd", "*", "587", "wildcard")]
    assert [status.network_facing(x) for x in got] == [True, False, True]


def test_masterless_exposed_units_use_the_generators_names() -> None:
    item = seen()
    facing = status.listeners(EDGE_CF, PARAMS, origin="master.cf")
    # a template (Accept=yes or a pool) is analysed as its instance 1
    assert status.exposed_units(item, facing) == ["postfix-edge-smtp-inet.service", "postfix-edge-submission-inet@1.service"]


def test_master_mode_exposes_the_unit_that_runs_master() -> None:
    states = {"postfix-edge-master.service": {"LoadState": "not-found", "ActiveState": "inactive"},
              "postfix@postfix-edge.service": {**ACTIVE, "UnitFileState": "enabled"}}
    item = seen(masterless=False, states=states)
    facing = status.listeners(EDGE_CF, PARAMS, origin="master.cf")
    assert status.exposed_units(item, facing) == ["postfix@postfix-edge.service"]
    assert status.exposed_units(item, [x for x in facing if not status.network_facing(x)]) == []
    got = status.report(item, 0)
    assert got["mode"] == "master" and got["supervisor"] == "postfix@postfix-edge.service"
    assert got["running"] and got["enabled"] and got["health"] == "ok"


def test_supervisor_prefers_an_active_unit_then_the_collections() -> None:
    states = {"a": {"LoadState": "loaded", "ActiveState": "inactive"}, "b": ACTIVE, "c": {"LoadState": "not-found"}}
    assert status.supervisor(["a", "b", "c"], states) == "b"
    assert status.supervisor(["a", "c"], states) == "a"
    assert status.supervisor(["c", "missing"], states) is None


def test_healthy_masterless_instance() -> None:
    queue = summarize(['{"queue_name": "deferred", "arrival_time": 100, "recipients": '
                       '[{"address": "a", "delay_reason": "refused"}]}'])
    got = status.report(seen(queue=queue, last_delivery=1000.0, log="/var/log/mail.log",
                             exposure={"postfix-edge-smtp-inet.service": 2.1, "x@1.service": None}), 1100)
    assert got["mode"] == "masterless" and got["supervisor"] == "postfix-edge.target"
    assert got["running"] and got["enabled"] and got["health"] == "ok" and got["severity"] == 0
    assert got["short_name"] == "edge" and got["problems"] == []
    assert got["queues"]["deferred"] == 1 and got["queue_total"] == 1 and got["queue_source"] == "postqueue"
    assert got["oldest_deferred"] == "1970-01-01T00:01:40+00:00" and got["oldest_deferred_age"] == 1000
    assert got["deferral_reasons"] == [{"reason": "refused", "recipients": 1}]
    assert got["last_delivery_age"] == 100 and got["last_delivery_epoch"] == 1000
    assert got["exposure_max"] == 2.1


def test_failed_units_and_sockets_that_do_not_listen_degrade() -> None:
    item = seen(rows=[["postfix-edge-smtp-inet@3.service", "loaded", "failed", "failed"]])
    item.states["postfix-edge-submission-inet.socket"] = {"LoadState": "loaded", "ActiveState": "failed",
                                                          "SubState": "failed"}
    got = status.report(item, 0)
    assert got["health"] == "degraded" and got["severity"] == 1
    assert got["failed_units"] == ["postfix-edge-smtp-inet@3.service", "postfix-edge-submission-inet.socket"]
    assert got["problems"] == ["failed units: postfix-edge-smtp-inet@3.service, postfix-edge-submission-inet.socket",
                               "not listening: postfix-edge-submission-inet.socket"]


def test_a_daemon_in_a_crash_loop_degrades() -> None:
    # the daemons' units throttle like master(8) instead of failing: activating again after restarts
    item = seen(rows=[["postfix-edge-submission-inet@1.service", "loaded", "activating", "auto-restart"]])
    item.states["postfix-edge-smtp-inet.service"] = {"LoadState": "loaded", "ActiveState": "activating",
                                                     "SubState": "start-pre", "NRestarts": "6"}
    item.states["postfix-edge-x-unix.service"] = {"LoadState": "loaded", "ActiveState": "activating",
                                                  "SubState": "start-pre", "NRestarts": "0"}  # a first start
    got = status.report(item, 0)
    assert got["health"] == "degraded" and got["failed_units"] == []
    assert got["problems"] == ["restarting after abnormal exits: postfix-edge-smtp-inet.service, "
                               "postfix-edge-submission-inet@1.service"]


def test_a_master_waiting_to_restart_is_not_running() -> None:
    states = {"postfix@postfix-edge.service": {"LoadState": "loaded", "ActiveState": "activating",
                                               "SubState": "auto-restart", "NRestarts": "2"}}
    got = status.report(seen(masterless=False, states=states), 0)
    assert not got["running"] and got["health"] == "down"
    assert got["problems"] == ["not running", "restarting after abnormal exits: postfix@postfix-edge.service"]


def test_a_stopped_target_is_down() -> None:
    item = seen()
    item.states["postfix-edge.target"] = {"LoadState": "loaded", "ActiveState": "inactive", "UnitFileState": "disabled"}
    got = status.report(item, 0)
    assert not got["running"] and got["enabled"] is False
    assert got["health"] == "down" and got["problems"][0] == "not running"


def test_without_systemd_a_live_master_is_running() -> None:
    got = status.report(seen(masterless=False, states={}, master_pid=42), 0)
    assert got["running"] and got["enabled"] is None and got["supervisor"] is None and got["units"] == []


def test_a_master_outside_its_stopped_unit_runs_but_is_degraded() -> None:
    stopped = {"LoadState": "loaded", "ActiveState": "inactive", "SubState": "dead"}
    got = status.report(seen(masterless=False, states={"postfix-edge-master.service": stopped}, master_pid=42), 0)
    assert got["running"] and got["health"] == "degraded"
    assert "master(8) runs outside postfix-edge-master.service (pid 42)" in got["problems"]


def test_unreadable_or_invalid_master_cf_is_a_problem_not_a_crash() -> None:
    assert "master.cf is not readable" in status.report(seen(master_cf=None), 0)["problems"][0]
    got = status.report(seen(master_cf="smtp inet n - y - - smtpd\nbad line\n"), 0)
    assert got["health"] == "degraded" and got["listeners"] == []


def test_problems_first_then_deferred_mail() -> None:
    def r(name: str, severity: int, deferred: int) -> dict[str, Any]:
        return {"name": name, "severity": severity, "queues": {"deferred": deferred}}

    got = status.ordered([r("a", 0, 1), r("b", 0, 9), r("c", 2, 0), r("d", 1, 0)])
    assert [x["name"] for x in got] == ["c", "d", "b", "a"]
