"""The fleet's status table: rows from instance_info results, thresholds, problems first."""

from __future__ import annotations

from typing import Any

from ansible_collections.mailfleet.postfix.plugins.module_utils import _status_table as table

GROUPS = {"mailfleet_edge": ["edge1", "edge2", "both"], "mailfleet_delivery": ["delivery1", "both"]}
LIMITS: dict[str, Any] = {"deferred": 10, "active": None, "oldest_deferred_age": 3600}
REFUSED = "connect to delivery1.lab.example[10.89.0.5]:25: Connection refused"


def inst(**kw: Any) -> dict[str, Any]:
    return {"name": "-", "mode": "masterless", "health": "ok", "severity": 0, "problems": [],
            "queues": {"maildrop": 0, "incoming": 0, "active": 0, "deferred": 0, "hold": 0},
            "oldest_deferred_age": None, "exposure_max": 1.4, "deferral_reasons": [], **kw}


def test_tiers_from_the_tier_groups() -> None:
    assert [table.tier_of(h, GROUPS) for h in ("edge1", "delivery1", "both", "client1")] == [
        "edge", "delivery", "edge+delivery", "-"]


def test_ages_are_short() -> None:
    assert [table.age(s) for s in (None, 45, 600, 3900, 2 * 86400 + 4 * 3600)] == ["-", "45s", "10m", "1h05m", "2d04h"]


def test_breaches_only_of_set_limits() -> None:
    over = inst(queues={"deferred": 12, "active": 5000}, oldest_deferred_age=4000)
    assert table.breaches(over, LIMITS) == ["deferred 12 > 10", "oldest deferred 1h06m > 1h00m"]
    assert table.breaches(inst(queues={"deferred": 10}), LIMITS) == []  # at the limit is not above it


def test_a_delivery_outage_problems_first_and_the_check_fails() -> None:
    results: dict[str, Any] = {
        "client1": {"instances": [inst(name="postfix-edge", mode="master", exposure_max=9.6)]},
        "edge1": {"instances": [inst(queues={"deferred": 12, "active": 1}, oldest_deferred_age=4000,
                                     deferral_reasons=[{"reason": REFUSED, "recipients": 12}])]},
        "edge2": {"instances": [inst(queues={"deferred": 3}, deferral_reasons=[{"reason": REFUSED, "recipients": 3}])]},
        "delivery1": {"instances": [inst(health="down", severity=2, problems=["not running"])]},
        "both": {"unreachable": True, "msg": "ssh: connect to host both\nport 22: No route to host"},
        "late": None,
    }
    got = table.fleet_status(results, GROUPS, LIMITS)
    assert [(r["host"], r["health"]) for r in got["rows"]] == [
        ("both", "down"), ("delivery1", "down"), ("late", "down"), ("edge1", "ok!"), ("edge2", "ok"), ("client1", "ok")]
    edge1 = got["rows"][3]
    assert edge1["tier"] == "edge" and edge1["queues"] == "deferred 12, active 1" and edge1["oldest deferred"] == "1h06m"
    assert edge1["notes"] == f"deferred 12 > 10; oldest deferred 1h06m > 1h00m; deferred: {REFUSED} (12 rcpt)"
    assert got["rows"][0]["notes"] == "unreachable: ssh: connect to host both port 22: No route to host"
    assert got["failures"] == [
        "both: unreachable: ssh: connect to host both port 22: No route to host",
        "delivery1 -: down: not running",
        "late: instance_info failed: no result (the host did not run the status task)",
        "edge1 -: deferred 12 > 10", "edge1 -: oldest deferred 1h06m > 1h00m"]
    assert not got["ok"]
    header, *lines, summary = got["lines"]
    assert header.split() == ["host", "tier", "instance", "mode", "health", "queues", "oldest", "deferred", "exposure", "notes"]
    assert lines[0].startswith("both       edge+delivery  -") and "9.6" in lines[-1]
    assert len({line.index(" edge") for line in lines[3:5]}) == 1  # columns aligned
    assert summary == "6 hosts: 3 down, 0 degraded, 1 above a threshold, 3 ok"


def test_degraded_fails_only_when_asked_and_a_healthy_fleet_passes() -> None:
    results = {"edge1": {"instances": [inst(health="degraded", severity=1, problems=["failed units: x.service"])]},
               "delivery1": {"instances": [inst()]}}
    assert table.fleet_status(results, GROUPS, LIMITS)["ok"]
    strict = table.fleet_status(results, GROUPS, LIMITS, fail_on_degraded=True)
    assert strict["failures"] == ["edge1 -: degraded: failed units: x.service"]
    assert table.fleet_status({"delivery1": {"instances": [inst()]}}, GROUPS, LIMITS)["failures"] == []


def test_a_malformed_host_result_is_that_host_down_and_the_table_stays() -> None:
    results: dict[str, Any] = {
        "edge1": {"instances": [inst(name="-", severity="0")]},
        "edge2": {"instances": "not a list of instances"},
        "mx1": {"instances": [inst(name="-")]},
    }
    status = table.fleet_status(results, GROUPS, {})
    rows = {r["host"]: r for r in status["rows"]}
    assert rows["edge1"]["health"] == rows["edge2"]["health"] == "down" and rows["mx1"]["health"] == "ok"
    assert "malformed instance_info result" in rows["edge1"]["notes"] and not status["ok"]


def test_control_characters_never_reach_the_terminal() -> None:
    hostile = "\x1b]0;owned\x07\x1b[2Kall good\x9b2J\nsecond line"
    results = {"edge1": {"instances": [inst(name="-", severity=2, health="down", problems=[hostile],
                                            deferral_reasons=[{"reason": hostile, "recipients": 1}])]}}
    status = table.fleet_status(results, GROUPS, {})
    for text in status["lines"] + status["failures"]:
        assert text.isprintable(), repr(text)
