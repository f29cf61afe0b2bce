"""The site playbook's edge batches: a canary rollout by default (1, 2, 4, ...), mailfleet_site_serial overrides it
with any value serial takes, and the first failure stops the rollout. The edge play's own serial and
max_fail_percentage run through ansible-playbook on local stand-in hosts (the roles are not run), after the
play that finds the tiers by the roles' group variables (playbooks/tiers.yml), as site.yml imports it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"
SITE = ROOT / "playbooks" / "site.yml"
TIERS = ROOT / "playbooks" / "tiers.yml"

pytestmark = pytest.mark.skipif(shutil.which(str(PLAYBOOK)) is None, reason="no ansible-playbook")


def edge_play() -> dict[str, Any]:
    plays = yaml.safe_load(SITE.read_text(encoding="utf-8"))
    assert plays[0].get("ansible.builtin.import_playbook") == "tiers.yml", "site.yml finds the tiers first"
    (play,) = [p for p in plays if p.get("hosts") == "mailfleet_edge"]
    return play


def run(tmp_path: Path, edges: int, *extra: str, fail_on: str = "", group: str = "edge",
        group_vars: str = "") -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """Run a stand-in of the edge play (its serial and failure settings) and return the batches it ran."""
    site = edge_play()
    play: dict[str, Any] = {key: site[key] for key in ("hosts", "gather_facts", "serial", "max_fail_percentage") if key in site}
    play["tasks"] = [
        {"name": "Record the batch", "ansible.builtin.lineinfile": {
            "path": str(tmp_path / "batches"), "line": "{{ ansible_play_batch | to_json }}", "create": True, "mode": "0644"},
         "delegate_to": "localhost", "run_once": True},
        {"name": "Fail where asked", "ansible.builtin.fail": {"msg": "stand-in failure"}, "when": "inventory_hostname == fail_on"},
    ]
    tiers = yaml.safe_load(TIERS.read_text(encoding="utf-8"))
    (tmp_path / "play.yml").write_text(yaml.safe_dump([*tiers, play]))
    hosts = "\n".join(f"edge{i} ansible_connection=local" for i in range(1, edges + 1))
    (tmp_path / "inventory.ini").write_text(f"localhost ansible_connection=local\n[{group}]\n{hosts}\n"
                                            f"[all:vars]\n{group_vars}\n")
    env = dict(os.environ, ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_PYTHON_INTERPRETER=str(ROOT / ".venv" / "bin" / "python"))
    done = subprocess.run([str(PLAYBOOK), "-i", str(tmp_path / "inventory.ini"), str(tmp_path / "play.yml"), "-e", f"fail_on={fail_on or 'none'}",
                           *extra], capture_output=True, text=True, env=env, check=False, timeout=300)
    lines = (tmp_path / "batches").read_text().splitlines() if (tmp_path / "batches").exists() else []
    return done, [json.loads(line) for line in lines]


def sizes(batches: list[list[str]]) -> list[int]:
    return [len(b) for b in batches]


@pytest.mark.parametrize(("edges", "expected"), [
    (1, [1]), (2, [1, 1]), (6, [1, 2, 3]), (8, [1, 2, 4, 1]), (20, [1, 2, 4, 8, 5]),
])
def test_the_default_is_a_canary_rollout_in_doubling_batches(tmp_path: Path, edges: int, expected: list[int]) -> None:
    done, batches = run(tmp_path, edges)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sizes(batches) == expected
    assert [h for b in batches for h in b] == [f"edge{i}" for i in range(1, edges + 1)]


@pytest.mark.parametrize(("value", "expected"), [
    ("mailfleet_site_serial=1", [1, 1, 1, 1, 1, 1]),
    ("mailfleet_site_serial=4", [4, 2]),
    ("mailfleet_site_serial=50%", [3, 3]),
    ('{"mailfleet_site_serial": [1, "100%"]}', [1, 5]),
    ('{"mailfleet_site_serial": [2, 3]}', [2, 3, 1]),
])
def test_mailfleet_site_serial_overrides_with_any_value_serial_takes(tmp_path: Path, value: str, expected: list[int]) -> None:
    done, batches = run(tmp_path, 6, "-e", value)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sizes(batches) == expected


def test_the_first_failure_stops_the_rollout(tmp_path: Path) -> None:
    # edge2 is in the second batch (edge2, edge3): no later batch starts.
    done, batches = run(tmp_path, 8, fail_on="edge2")
    assert done.returncode != 0
    assert batches == [["edge1"], ["edge2", "edge3"]]
    edge_play_output = done.stdout.split("PLAY [")[2:]  # after the tiers play, which lists every host
    assert edge_play_output and "edge4" not in "".join(edge_play_output)


def test_custom_group_names_follow_the_roles_group_variables(tmp_path: Path) -> None:
    # No group 'edge' at all: the edge hosts are the group postfix_delivery_edge_group names.
    done, batches = run(tmp_path, 6, group="mx", group_vars="postfix_delivery_edge_group=mx\npostfix_edge_delivery_group=stores")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sizes(batches) == [1, 2, 3]
    assert [h for b in batches for h in b] == [f"edge{i}" for i in range(1, 7)]


def test_without_the_group_variables_a_custom_group_is_not_the_edge_tier(tmp_path: Path) -> None:
    done, batches = run(tmp_path, 2, group="mx")
    assert done.returncode == 0, done.stdout + done.stderr
    assert batches == []
