"""The lab summary ends with the fleet's status table: a queue above a threshold is shown but does not fail
the lab, an instance that is down (or no table at all) does."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

LAB = Path(__file__).resolve().parents[3] / "lab"
TABLE = ["host   tier  instance  mode        health  queues      oldest deferred  exposure  notes",
         "edge1  edge  -         masterless  ok!     deferred 3  2m               1.4       deferred 3 > 2",
         "1 hosts: 0 down, 0 degraded, 1 above a threshold, 0 ok"]


@pytest.fixture(name="summary")
def fixture_summary(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(LAB))
    sys.modules.pop("summary", None)
    return importlib.import_module("summary")


def record(**status: Any) -> dict[str, Any]:
    return {"playbook": "status.yml", "failures": [], "hosts": {}, "stats": {"status": status}}


def test_a_queue_above_its_threshold_is_shown_and_does_not_fail_the_lab(summary: Any) -> None:
    lines, down = summary.status_lines(record(lines=TABLE, ok=False, down=False), "state")
    assert not down
    assert lines[0] == "status (playbooks/status.yml): ok, a queue is above its threshold"
    assert lines[1:] == [f"  {line}" for line in TABLE]


def test_an_instance_down_fails_the_lab(summary: Any) -> None:
    lines, down = summary.status_lines(record(lines=TABLE, ok=False, down=True), "state")
    assert down
    assert "DOWN" in lines[0]


def test_no_table_fails_the_lab_and_names_the_log(summary: Any) -> None:
    lines, down = summary.status_lines(None, "state")
    assert down
    assert lines == ["status: no table (see state/status.log)"]
