# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rollout: the site playbook on a fresh bench fleet, first run and idempotent re-run.

Fleet sizes count managed hosts (edge + delivery); one outside client is added for the probe mails.
"""

from __future__ import annotations

import json
import os
from typing import Any

from benchlib import DOMAIN, PREFIX, STATE, USER, playbook, remove_containers, say, site_playbook, start_containers, write_inventory

# managed hosts -> (edges, deliveries): one delivery host per two edges, as in the lab.
SHAPES = {3: (2, 1), 9: (6, 3), 12: (8, 4)}
# The edge play's header, printed once per batch.
EDGE_PLAY = "PLAY [Configure the edge tier"


def fleet_hosts(size: int) -> dict[str, list[str]]:
    edges, deliveries = SHAPES.get(size, (size - max(1, size // 3), max(1, size // 3)))
    return {
        "edge": [f"edge{i}" for i in range(1, edges + 1)],
        "delivery": [f"delivery{i}" for i in range(1, deliveries + 1)],
        "client": ["client1"],
    }


INVENTORY_VARS: dict[str, Any] = {
    "postfix_edge_domains": [DOMAIN],
    "postfix_delivery_users": [USER],
    "postfix_delivery_mailbox": "maildir",
    "postfix_probe_recipient": f"{USER}@{DOMAIN}",
}
# Nothing ever leaves the bench fleet.
NO_OUTSIDE = {"default_transport": f"error:5.7.1 this bench fleet delivers only to {DOMAIN}"}


def inventory_vars() -> dict[str, Any]:
    """INVENTORY_VARS plus the edge settings in BENCH_EDGE_MAIN_CF / BENCH_EDGE_MASTER_CF (JSON)."""
    extra = {**INVENTORY_VARS, "postfix_edge_main_cf": dict(NO_OUTSIDE), "postfix_delivery_main_cf": dict(NO_OUTSIDE)}
    for env, var in (("BENCH_EDGE_MAIN_CF", "postfix_edge_main_cf"), ("BENCH_EDGE_MASTER_CF", "postfix_edge_master_cf")):
        if os.environ.get(env, "").strip():
            value = json.loads(os.environ[env])
            extra[var] = {**extra[var], **value} if isinstance(value, dict) else value
    return extra


def up(size: int) -> tuple[dict[str, list[str]], Any]:
    """Start a fresh fleet of `size` managed hosts and write its inventory."""
    groups = fleet_hosts(size)
    hosts = {h: g for g, members in groups.items() for h in members}
    say(f"starting a fleet of {size} managed hosts + 1 client: {' '.join(hosts)}")
    start_containers(hosts)
    inventory = STATE / f"inventory-{size}.ini"
    orchestrator = os.environ.get("BENCH_ORCHESTRATOR", "")
    extra = inventory_vars()
    if orchestrator:
        extra["postfix_orchestrator"] = orchestrator
    write_inventory(inventory, groups, extra)
    return groups, inventory


def down(groups: dict[str, list[str]]) -> None:
    remove_containers(PREFIX + h for members in groups.values() for h in members)


def measure(size: int, keep: bool = False) -> dict[str, Any]:
    """First run and re-run of the site playbook on a fresh fleet; the fleet stays up when keep."""
    groups, inventory = up(size)
    book = site_playbook()
    extra = []
    serial = os.environ.get("BENCH_SITE_SERIAL", "")
    if serial:
        extra = ["-e", f"mailfleet_site_serial={serial}"]
    out: dict[str, Any] = {"hosts": size, "groups": groups, "playbook": str(book.relative_to(book.parents[1])),
                           "serial": serial or "playbook default"}
    try:
        for run_name in ("first", "rerun"):
            say(f"rollout {size} hosts: {run_name} run of {out['playbook']}")
            res = playbook(inventory, book, STATE / f"rollout-{size}-{run_name}.log", *extra)
            managed = {h: s for h, s in res["hosts"].items() if h not in groups["client"]}
            tasks = [s.get("ok", 0) + s.get("failures", 0) + s.get("skipped", 0) for s in managed.values()]
            changed = [s.get("changed", 0) for s in managed.values()]
            log = (STATE / f"rollout-{size}-{run_name}.log").read_text(encoding="utf-8", errors="replace")
            out[run_name] = {
                "rc": res["rc"], "seconds": res["seconds"], "recap": res["hosts"], "failures": res["failures"][:5],
                "edge_batches": log.count(EDGE_PLAY),
                "tasks_per_host_max": max(tasks, default=0), "tasks_per_host_min": min(tasks, default=0),
                "changed_total": sum(changed), "changed_per_host_max": max(changed, default=0),
            }
            say(f"rollout {size} hosts: {run_name} rc={res['rc']} {res['seconds']} s, tasks/host "
                f"{min(tasks, default=0)}–{max(tasks, default=0)}, changed {sum(changed)}")
            if res["rc"] != 0:
                for fail in res["failures"][:3]:
                    say(f"  failed: {fail.get('host')}: {fail.get('task')}: {fail.get('msg', '')[:300]}")
                break
    finally:
        if not keep:
            down(groups)
    out["groups"] = groups
    return out
