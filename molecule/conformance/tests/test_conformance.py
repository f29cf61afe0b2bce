# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The conformance run (converge) found every file identical or refused for a reason master(8) shares.

Reads build/conformance/result.json, written by tests/conformance/harness.py; the human report is
build/conformance/report.md beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

RESULT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3])) \
    / "build" / "conformance" / "result.json"
PASSING = ("identical", "refused-master")

testinfra_hosts = ["podman://mailfleet-mol-conformance"]


def _results() -> dict[str, Any]:
    with open(RESULT, encoding="utf-8") as handle:
        return json.load(handle)


def test_the_run_finished() -> None:
    summary = _results()["summary"]
    assert summary["finished"] and summary["done"] == summary["files"] > 0, summary


@pytest.mark.parametrize("result", _results()["results"] if RESULT.exists() else [], ids=lambda r: r["file"])
def test_file_conforms(result: dict[str, Any]) -> None:
    detail = [result.get("reason") or ""] + result["differences"]
    # One line each, cut: the report (build/conformance/report.md) has them in full.
    lines = "\n".join(d.replace("\n", " ")[:400] for d in detail if d)
    assert result["status"] in PASSING, f"{result['file']}: {result['status']}\n{lines}"


def test_host_is_back_under_master(host: Any) -> None:
    assert host.run("pgrep -x master").rc == 0
    assert host.run("systemctl list-units --failed --plain --no-legend").stdout.strip() == ""
