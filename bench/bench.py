# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The benchmarks behind `make bench` (entry point bench/run.sh).

    bench.py [all|generator|rollout|throughput|footprint]   run, print tables, write bench/results/*.json
    bench.py report FILE.json                              print the tables of an earlier run again
    bench.py down                                          remove every bench container and the network

Knobs (environment): BENCH_MESSAGES (1000), BENCH_SIZES ("2048 51200"), BENCH_CONCURRENCY ("20"),
BENCH_ROUNDS (3), BENCH_WARMUP (200 messages per configuration, reported, not in the medians),
BENCH_IDLE (120 s before the footprint), BENCH_ROLLOUT_SIZES ("3 9 12"), BENCH_GENERATOR_RUNS
("30 10 3": default, 100, 1,000 entries), BENCH_FLEET_MASTER (1: also a split fleet in master mode),
BENCH_KEEP (1: leave the containers up), BENCH_CONFIGS ("A,B": only those throughput configurations,
default all four), BENCH_SINGLE_MAIN_CF (JSON: main.cf settings of both single instances A and B, e.g.
'{"max_use": "1000"}'), BENCH_SITE, BENCH_SITE_SERIAL, BENCH_ORCHESTRATOR,
BENCH_EDGE_MAIN_CF / BENCH_EDGE_MASTER_CF (JSON: postfix_edge_main_cf / postfix_edge_master_cf of
every bench edge host, e.g. to try TLS connection reuse on the edge → delivery hop).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import footprint
import rollout
import synthetic
import throughput
from benchlib import PREFIX, RESULTS, STATE, Results, env_int, env_list, machine, playbook, say, site_playbook, start_containers, teardown, write_inventory

MASTER_FLEET = {"edge": ["medge1"], "delivery": ["mdelivery1"], "client": ["client1"]}


def master_fleet() -> dict[str, Any]:
    """A second split fleet (one edge, one delivery host) in master mode, for target D."""
    start_containers({"medge1": "edge", "mdelivery1": "delivery"})
    inventory = STATE / "inventory-master.ini"
    write_inventory(inventory, MASTER_FLEET, {**rollout.inventory_vars(), "postfix_orchestrator": "master"})
    say("site playbook on the master-mode fleet medge1 → mdelivery1")
    res = playbook(inventory, site_playbook(), STATE / "site-master-fleet.log")
    if res["rc"] != 0:
        raise RuntimeError(f"site playbook on the master-mode fleet failed: {res['failures'][:2]}")
    return {"seconds": res["seconds"]}


def fleet_up() -> None:
    """The 3-host fleet of target C, untimed (when the rollout part did not leave it running)."""
    groups, inventory = rollout.up(3)
    res = playbook(inventory, site_playbook(), STATE / "site-fleet.log")
    if res["rc"] != 0:
        raise RuntimeError(f"site playbook on the bench fleet failed: {res['failures'][:2]}")


def running(name: str) -> bool:
    return os.system(f"podman container exists {PREFIX}{name} >/dev/null 2>&1") == 0


def main(argv: list[str]) -> int:
    what = argv[1] if len(argv) > 1 else "all"
    if what == "down":
        teardown()
        return 0
    if what == "report":
        print(report(json.loads(Path(argv[2]).read_text(encoding="utf-8"))))
        return 0
    parts = {"generator", "rollout", "throughput", "footprint"} if what == "all" else {what}
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    res = Results(RESULTS / f"bench-{stamp}.json")
    res.data = {"started": stamp, "command": os.environ.get("BENCH_COMMAND", "bench/run.sh " + " ".join(argv[1:])),
                "machine_before": machine(), "knobs": {k: v for k, v in os.environ.items() if k.startswith("BENCH_")}}
    STATE.mkdir(parents=True, exist_ok=True)
    keep = os.environ.get("BENCH_KEEP", "0") == "1"
    # BENCH_CONFIGS=A,B: only the single instances (no split fleets to deploy; ~3 min instead of ~8).
    configs = {c.upper() for c in os.environ.get("BENCH_CONFIGS", "").replace(",", " ").split()} or set("ABCD")
    fleet_master = os.environ.get("BENCH_FLEET_MASTER", "1") == "1" and "D" in configs
    t0 = time.monotonic()
    if what == "all":
        teardown()
    try:
        if "generator" in parts:
            runs = env_list("BENCH_GENERATOR_RUNS", [30, 10, 3])
            say("generator: bench/generator.sh on the default master.cf and synthetic 100 / 1,000-entry files")
            res.data["generator"] = synthetic.measure([None, 100, 1000], dict(zip([None, 100, 1000], runs, strict=False)))
            res.save()
            print(synthetic.render(res.data["generator"]), flush=True)
        if "rollout" in parts:
            res.data["rollout"] = []
            # Largest first: the 3-host fleet then stays up for the throughput part.
            for size in sorted(env_list("BENCH_ROLLOUT_SIZES", [3, 9, 12]), reverse=True):
                keep_fleet = size == 3 and bool(parts & {"throughput", "footprint"})
                res.data["rollout"].append(rollout.measure(size, keep=keep_fleet))
                res.save()
            print(render_rollout(res.data["rollout"]), flush=True)
        if parts & {"throughput", "footprint"}:
            if "C" not in configs:
                if not running("client1"):
                    start_containers({"client1": "client"})
            elif not (running("edge1") and running("delivery1") and running("client1")):
                fleet_up()
            if fleet_master:
                res.data["master_fleet"] = master_fleet()
            throughput.setup_singles()
        if "throughput" in parts:
            tp = throughput.measure(env_int("BENCH_ROUNDS", 3), env_int("BENCH_MESSAGES", 1000),
                                    env_list("BENCH_SIZES", [2048, 51200]), env_list("BENCH_CONCURRENCY", [20]),
                                    env_int("BENCH_WARMUP", 200), with_master_fleet=fleet_master, configs=configs)
            res.data["throughput"] = tp
            res.save()
            print(throughput.render(tp["summary"], tp["targets"], tp["warmup"]) + "\n\n"
                  + throughput.render_ratios(tp["ratios"], tp["cold"], tp["cpu_ratios"]), flush=True)
        if "footprint" in parts:
            idle = env_int("BENCH_IDLE", 120)
            say(f"footprint: {idle} s without mail, then PSS of every Postfix-related process")
            time.sleep(idle)
            hosts = {"A: single, master": PREFIX + throughput.MASTER, "B: single, master-less": PREFIX + throughput.MASTERLESS,
                     "C: edge1 (master-less)": PREFIX + "edge1", "C: delivery1 (master-less)": PREFIX + "delivery1"}
            if fleet_master:
                hosts.update({"D: medge1 (master)": PREFIX + "medge1", "D: mdelivery1 (master)": PREFIX + "mdelivery1"})
            hosts = {k: v for k, v in hosts.items() if k[0] in configs}
            res.data["footprint"] = {"idle_seconds": idle, "hosts": footprint.measure(hosts)}
            res.save()
            print(footprint.render(res.data["footprint"]["hosts"], FOOTPRINT_PAIRS), flush=True)
    finally:
        res.data["seconds"] = round(time.monotonic() - t0, 1)
        res.data["machine_after"] = machine()
        res.save()
        if not keep:
            teardown()
    say(f"done in {res.data['seconds']:.0f} s; results: {res.path.relative_to(RESULTS.parent.parent)}")
    print("\n" + report(res.data))
    return 0


FOOTPRINT_PAIRS = [("B: single, master-less", "A: single, master"),
                   ("C: edge1 (master-less)", "D: medge1 (master)"), ("C: delivery1 (master-less)", "D: mdelivery1 (master)")]


# Re-run (changed = 0) of the 9-host fleet against the 3-host fleet: the rollout must grow sub-linearly.
ROLLOUT_TARGET = (9, 3, 2.0)


def render_rollout(items: list[dict[str, Any]]) -> str:
    """Wall time per size and run; re-runs also as a ratio to the smallest fleet's re-run (JSON of older runs too)."""
    from benchlib import table

    big, small, goal = ROLLOUT_TARGET
    reruns = {it["hosts"]: it["rerun"]["seconds"] for it in items if it.get("rerun") and it["rerun"]["rc"] == 0}
    base_hosts = small if small in reruns else min(reruns, default=0)
    rows = []
    for it in sorted(items, key=lambda i: i["hosts"]):
        for run_name in ("first", "rerun"):
            r = it.get(run_name)
            if not r:
                continue
            lo, hi = r["tasks_per_host_min"], r["tasks_per_host_max"]
            tasks = f"{lo}–{hi}" if lo != hi else str(hi)
            ratio = target = met = ""
            if run_name == "rerun" and base_hosts and it["hosts"] in reruns:
                ratio = f"{reruns[it['hosts']] / reruns[base_hosts]:.2f}×"
                if it["hosts"] == big and base_hosts == small:
                    target = f"≤ {goal:g}×"
                    met = "yes" if reruns[big] <= goal * reruns[small] else "NO"
            rows.append([it["hosts"], f"{len(it['groups']['edge'])} edge + {len(it['groups']['delivery'])} delivery",
                         r.get("edge_batches", "—"), run_name, f"{r['seconds']:.1f}", f"{r['seconds'] / it['hosts']:.1f}",
                         ratio, target, met, tasks, r["changed_total"], "ok" if r["rc"] == 0 else f"FAILED ({r['rc']})"])
    serial = {str(it.get("serial", "?")) for it in items}
    return "\n".join([
        table(["hosts", "fleet", "edge batches", "run", "wall s", "s per host", f"re-run / {base_hosts or small}-host re-run",
               "target", "met", "tasks per host", "changed", "result"], rows),
        f"Edge batch sizes: {', '.join(sorted(serial))}.",
    ])


def report(data: dict[str, Any]) -> str:
    out = [f"mailfleet bench {data.get('started', '')}: {data.get('command', '')}",
           f"machine: {data.get('machine_before', {}).get('cores')} cores, load before "
           f"{' '.join(data.get('machine_before', {}).get('loadavg', []))}, after {' '.join(data.get('machine_after', {}).get('loadavg', []))}"]
    if "generator" in data:
        out += ["", "## Generator", synthetic.render(data["generator"])]
    if "rollout" in data:
        out += ["", f"## Rollout ({data['rollout'][0]['playbook'] if data['rollout'] else ''})", render_rollout(data["rollout"])]
    if "throughput" in data:
        tp = data["throughput"]
        # Older JSON files have no cold/cpu_ratios entries: derive them, so that report prints the same tables.
        cold = tp.get("cold", throughput.cold_ratio(tp.get("warmup", [])))
        cpu_items = tp.get("cpu_ratios", throughput.cpu_ratios(tp["summary"]))
        out += ["", "## Throughput", throughput.render(tp["summary"], tp["targets"], tp.get("warmup")), "",
                throughput.render_ratios(tp["ratios"], cold, cpu_items), "", throughput.render_breakdown(tp["summary"], tp["targets"])]
    if "footprint" in data:
        out += ["", f"## Idle footprint (after {data['footprint']['idle_seconds']} s without mail)",
                footprint.render(data["footprint"]["hosts"], FOOTPRINT_PAIRS)]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
