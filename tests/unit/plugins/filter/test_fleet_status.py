"""fleet_status filter: the adapter over _status_table (hostvars, limits)."""

from __future__ import annotations

from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.mailfleet.postfix.plugins.filter.fleet_status import FilterModule, fleet_status

UP = {"instances": [{"name": "-", "mode": "master", "health": "ok", "severity": 0, "problems": [],
                     "queues": {"deferred": 7}, "oldest_deferred_age": 60, "exposure_max": None}]}


def test_registered_and_reads_the_result_of_each_host() -> None:
    assert set(FilterModule().filters()) == {"fleet_status"}
    hostvars: dict[str, Any] = {"a": {"mailfleet_status_result": UP}, "b": {}}
    got = fleet_status(hostvars, ["a", "b", "c"], {"mailfleet_edge": ["a"]}, max_deferred="5")
    assert [(r["host"], r["health"]) for r in got["rows"]] == [("b", "down"), ("c", "down"), ("a", "ok!")]
    assert got["failures"][-1] == "a -: deferred 7 > 5" and got["rows"][2]["tier"] == "edge"
    assert fleet_status(hostvars, ["a"], {}, max_deferred=None, max_active="")["ok"]


@pytest.mark.parametrize(("args", "kwargs", "fragment"), [
    (([], ["a"], {}), {}, "expects the inventory's hostvars"),
    (({}, "a", {}), {}, "'hosts' must be a list"),
    (({}, [], []), {}, "'groups' must be"),
    (({}, [], {}), {"max_deferred": "many"}, "'max_deferred' must be a number"),
    (({}, [], {}), {"max_active": -1}, "'max_active' must not be negative"),
])
def test_bad_arguments_are_named(args: tuple[Any, ...], kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(AnsibleFilterError, match=fragment):
        fleet_status(*args, **kwargs)
