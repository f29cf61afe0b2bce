"""The rollout table of the bench report: re-run wall time as a ratio to the 3-host re-run, the target at 9 hosts,
seconds per host, edge batches; older result files (without batch counts) still render."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"


@pytest.fixture(name="bench")
def fixture_bench(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(BENCH))
    for name in ("bench", "benchlib", "rollout", "footprint", "synthetic", "throughput"):
        sys.modules.pop(name, None)
    return importlib.import_module("bench")


def item(hosts: int, edges: int, first: float, rerun: float, batches: int | None = None) -> dict[str, Any]:
    def run(seconds: float) -> dict[str, Any]:
        r: dict[str, Any] = {"rc": 0, "seconds": seconds, "tasks_per_host_min": 29, "tasks_per_host_max": 36, "changed_total": 0}
        if batches is not None:
            r["edge_batches"] = batches
        return r
    return {"hosts": hosts, "groups": {"edge": ["e"] * edges, "delivery": ["d"] * (hosts - edges), "client": ["c"]},
            "playbook": "playbooks/site.yml", "serial": "playbook default", "first": run(first), "rerun": run(rerun)}


def rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ") and "hosts" not in line]


def test_ratio_target_and_seconds_per_host(bench: Any) -> None:
    out = bench.render_rollout([item(12, 8, 60.0, 45.0, 4), item(9, 6, 50.0, 36.0, 3), item(3, 2, 30.0, 18.0, 2)])
    table = rows(out)
    assert [r[0] for r in table] == ["3", "3", "9", "9", "12", "12"]
    rerun9 = table[3]
    assert rerun9[2:9] == ["3", "rerun", "36.0", "4.0", "2.00×", "≤ 2×", "yes"]
    assert table[5][6:9] == ["2.50×", "", ""]
    assert "re-run / 3-host re-run" in out


def test_a_missed_target_says_no(bench: Any) -> None:
    table = rows(bench.render_rollout([item(3, 2, 37.0, 24.0), item(9, 6, 187.0, 152.4)]))
    assert table[3][6:9] == ["6.35×", "≤ 2×", "NO"]
    # Older result files have no batch count.
    assert table[3][2] == "—"
