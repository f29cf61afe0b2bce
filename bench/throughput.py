# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Throughput: smtp-source from an outside client into three configurations, interleaved.

A  one stock Postfix instance under master(8) (Debian's postfix@-.service), local delivery to Maildir;
B  the same container set-up, switched to master-less mode by mailfleet.postfix.systemd_units;
C  the split fleet deployed by the site playbook: edge1 relays to delivery1, which delivers to Maildir.

Every number comes from the hosts' mail logs (journald timestamps, microseconds): messages/second
from the first "connect from" the client to the last local "status=sent", and the delay of each
message from its arrival on the first host ("QUEUEID: client=") to its local delivery, following
"queued as" across hosts. CPU is every process of the involved containers (cgroup cpuacct).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from benchlib import (
    DOMAIN,
    PREFIX,
    STATE,
    USER,
    VENV_BIN,
    ansible_env,
    cpu_ns,
    ip_of,
    journal_cursor,
    journal_since,
    median,
    percentile,
    pexec,
    pypexec,
    run,
    say,
    start_containers,
    table,
    write_inventory,
)

MASTER = "single-master"
MASTERLESS = "single-masterless"
MAILDIR = f"/home/{USER}/Maildir"

RE_CLIENT = re.compile(r"^([0-9A-Za-z]+): client=.*\[([0-9a-fA-F.:]+)\]")
RE_RELAYED = re.compile(r"^([0-9A-Za-z]+): to=<[^>]*>, .*status=sent \(250 .*queued as ([0-9A-Za-z]+)\)")
RE_LOCAL = re.compile(r"^([0-9A-Za-z]+): to=<[^>]*>, relay=local, .*status=(\w+)")
RE_STATUS = re.compile(r"^([0-9A-Za-z]+): to=<[^>]*>, .*status=(deferred|bounced|expired)")

# Counts files arriving in Maildir/new; one process per round instead of polling through podman exec.
WAITER = r"""
import os, sys, time
path, want, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
print("ready", flush=True)
t0 = time.monotonic()
while True:
    try:
        have = len(os.listdir(path))
    except FileNotFoundError:
        have = 0
    if have >= want:
        print(have)
        break
    if time.monotonic() - t0 > limit:
        print(have)
        sys.exit(1)
    time.sleep(0.05)
"""


# CPU ticks of the long-running processes that are not Postfix daemons (or are master itself):
# PID 1, journald, master(8), and the master-less status holder. Pool workers come and go, so the
# rest of the container's CPU is "Postfix daemons and everything else".
SAMPLER = r"""
import json, os
tick = os.sysconf("SC_CLK_TCK")
out = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        comm = open(f"/proc/{pid}/comm").read().strip()
        cgroup = open(f"/proc/{pid}/cgroup").read()
    except OSError:
        continue
    if pid == "1":
        key = "systemd (PID 1)"
    elif comm == "systemd-journal":
        key = "journald"
    elif comm == "master":
        key = "master"
    elif comm.startswith("python") and "holder" in cgroup:
        key = "holder"
    else:
        continue
    out[key] = out.get(key, 0) + (int(stat[11]) + int(stat[12])) * 1000 // tick
print(json.dumps(out))
"""


def sample(container: str) -> dict[str, int]:
    """Milliseconds of CPU used so far by PID 1, journald, master and the holder."""
    return json.loads(pypexec(container, SAMPLER, privileged=True))


@dataclass
class Target:
    key: str  # A, B, C
    name: str
    ingress: str  # container the client sends to
    final: str  # container that delivers locally


def targets(with_master_fleet: bool = True) -> list[Target]:
    tgs = [
        Target("A", "single instance, master(8)", PREFIX + MASTER, PREFIX + MASTER),
        Target("B", "single instance, master-less", PREFIX + MASTERLESS, PREFIX + MASTERLESS),
        Target("C", "split fleet edge1 → delivery1, master-less", PREFIX + "edge1", PREFIX + "delivery1"),
    ]
    if with_master_fleet:
        tgs.append(Target("D", "split fleet medge1 → mdelivery1, master(8)", PREFIX + "medge1", PREFIX + "mdelivery1"))
    return tgs


# (new, base, target ratio of msg/s or None, what it compares). The goals are issue 15's, for one shared
# 2-core machine: two hops there cost about twice one instance's CPU, so the split fleet's floor is ~0.5×.
RATIOS = [
    ("B", "A", 1.0, "master-less vs master, single instance, warm pools"),
    ("C", "A", 0.5, "split fleet (master-less, the default) vs stock single instance"),
    ("C", "B", None, "split fleet vs single instance, both master-less"),
    ("D", "A", None, "split fleet vs single instance, both master(8)"),
]
COLD_TARGET = ("B", "A", 0.8)  # cold burst: the warm-up round, pools from zero
# CPU per message of the split fleet against the single instance (lower is better): (field, goal, what)
CPU_TARGETS = [
    ("cpu_ms_per_msg", 2.0, "split fleet, both tiers"),
    ("cpu_ms_per_msg_ingress", 1.2, "edge tier alone"),
    ("cpu_ms_per_msg_final", 1.2, "delivery tier alone"),
]


def setup_singles() -> None:
    """Two identical single-instance hosts; B is then switched to master-less mode."""
    say(f"starting {MASTER} and {MASTERLESS}")
    start_containers({MASTER: "single", MASTERLESS: "single"})
    # BENCH_SINGLE_MAIN_CF (JSON object): main.cf settings for both single instances, e.g. '{"max_use": "1000"}'.
    extra = json.loads(os.environ.get("BENCH_SINGLE_MAIN_CF", "") or "{}")
    settings = " ".join(shlex.quote(f"{k} = {v}") for k, v in extra.items())
    for host in (MASTER, MASTERLESS):
        pexec(PREFIX + host,
              f"id {USER} >/dev/null 2>&1 || useradd -m -s /usr/sbin/nologin {USER};"
              f" postconf -e 'mydestination = $myhostname, localhost, {DOMAIN}' 'home_mailbox = Maildir/' {settings}"
              " && postfix check && systemctl reload postfix")
    inventory = STATE / "inventory-single.ini"
    write_inventory(inventory, {"single": [MASTER, MASTERLESS]}, {})
    say(f"switching {MASTERLESS} to master-less mode (mailfleet.postfix.systemd_units)")
    run([str(VENV_BIN / "ansible"), "-i", str(inventory), MASTERLESS,
         "-m", "mailfleet.postfix.systemd_units", "-a", "mode=systemd"], env=ansible_env(), timeout=600)
    masters = pexec(PREFIX + MASTERLESS, "pgrep -x master || true").strip()
    if masters:
        raise RuntimeError(f"a master process runs in {MASTERLESS} after the switch: {masters}")
    if not pexec(PREFIX + MASTER, "pgrep -x master || true").strip():
        raise RuntimeError(f"no master process runs in {MASTER}")


def wait_queues_empty(containers: set[str], limit: float = 120) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        left = sum(int(pexec(c, "postqueue -j 2>/dev/null | wc -l").strip() or 0) for c in containers)
        if left == 0:
            return
        time.sleep(1)
    raise RuntimeError(f"queues of {sorted(containers)} not empty after {limit:.0f} s")


def one_round(target: Target, client: str, messages: int, size: int, concurrency: int,
              limit: float = 600) -> dict[str, Any]:
    """Send `messages` from the client through the target and measure from the logs."""
    hosts = {target.ingress, target.final}
    pexec(target.final, f"install -d -o {USER} -g {USER} -m 700 {MAILDIR} {MAILDIR}/new {MAILDIR}/cur {MAILDIR}/tmp"
                        f" && find {MAILDIR} -type f -delete")
    wait_queues_empty(hosts)
    cursors = {c: journal_cursor(c) for c in hosts}
    procs0 = {c: sample(c) for c in hosts}
    cpu0 = {c: cpu_ns(c) for c in hosts | {client}}
    waiter = subprocess.Popen(["podman", "exec", "-i", target.final, "python3", "-", f"{MAILDIR}/new",
                               str(messages), str(limit)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert waiter.stdin and waiter.stdout
    waiter.stdin.write(WAITER)
    waiter.stdin.close()
    waiter.stdout.readline()  # "ready"
    t0 = time.monotonic()
    ingress_ip = ip_of(target.ingress)
    src = run(["podman", "exec", client, "smtp-source", "-s", str(concurrency), "-l", str(size), "-m", str(messages),
               "-f", f"bench@client1.{DOMAIN}", "-t", f"{USER}@{DOMAIN}", f"{ingress_ip}:25"],
              check=False, timeout=limit)
    client_seconds = time.monotonic() - t0
    have = waiter.stdout.read().strip()
    waiter_rc = waiter.wait()
    cpu1 = {c: cpu_ns(c) for c in hosts | {client}}
    procs1 = {c: sample(c) for c in hosts}
    time.sleep(0.5)  # journald may still be writing the last lines
    client_ip = ip_of(client)
    logs = {c: journal_since(c, cursors[c]) for c in hosts}
    res = analyse(logs[target.ingress], logs[target.final], client_ip, relayed=target.ingress != target.final)
    host_cpu = sum(cpu1[c] - cpu0[c] for c in hosts)
    res.update({
        "target": target.key, "messages": messages, "size": size, "concurrency": concurrency,
        "client_seconds": round(client_seconds, 3), "smtp_source_rc": src.returncode,
        "maildir_files": int(have or 0), "complete": waiter_rc == 0 and res["delivered"] >= messages,
        "cpu_ms_per_msg": round(host_cpu / 1e6 / messages, 2),
        # Per host: on separate machines the busier host, not the sum, bounds the rate.
        "cpu_ms_per_msg_ingress": round((cpu1[target.ingress] - cpu0[target.ingress]) / 1e6 / messages, 2),
        "cpu_ms_per_msg_final": round((cpu1[target.final] - cpu0[target.final]) / 1e6 / messages, 2),
        "client_cpu_ms_per_msg": round((cpu1[client] - cpu0[client]) / 1e6 / messages, 2),
    })
    # Per host and process kind, ms per message; "postfix and rest" is what remains of the container.
    breakdown = {}
    for c in sorted(hosts):
        part = {k: round((procs1[c].get(k, 0) - v) / messages, 2) for k, v in procs0[c].items()}
        part["postfix daemons and rest"] = round((cpu1[c] - cpu0[c]) / 1e6 / messages - sum(part.values()), 2)
        role = "host" if target.ingress == target.final else "edge" if c == target.ingress else "delivery"
        breakdown[role] = part
    res["cpu_breakdown"] = breakdown
    # Units systemd started during the round: pool workers growing or replacing those that reached max_use.
    res["unit_starts"] = {
        ("host" if target.ingress == target.final else "edge" if c == target.ingress else "delivery"):
        int(pexec(c, f"journalctl -q --after-cursor='{cursors[c]}' _PID=1 -o cat | grep -c '^Started postfix-' || true").strip() or 0)
        for c in sorted(hosts)}
    if src.returncode != 0:
        res["smtp_source_error"] = (src.stderr or src.stdout)[-300:]
    return res


def analyse(ingress: list[Any], final: list[Any], client_ip: str, *, relayed: bool) -> dict[str, Any]:
    connects = [ln.ts for ln in ingress if ln.ident.endswith("/smtpd") and ln.msg.startswith("connect from")
                and f"[{client_ip}]" in ln.msg]
    arrival: dict[str, float] = {}
    for ln in ingress:
        m = RE_CLIENT.match(ln.msg)
        if m and ln.ident.endswith("/smtpd") and m.group(2) == client_ip:
            arrival[m.group(1)] = ln.ts
    hop: dict[str, str] = {}
    if relayed:
        for ln in ingress:
            m = RE_RELAYED.match(ln.msg)
            if m and not ln.ident.endswith("/local"):
                hop[m.group(1)] = m.group(2)
    sent: dict[str, float] = {}
    for ln in final:
        m = RE_LOCAL.match(ln.msg)
        if m and m.group(2) == "sent":
            sent[m.group(1)] = ln.ts
    problems = sum(1 for ln in ingress + final if RE_STATUS.match(ln.msg))
    delays = []
    last = 0.0
    for qid, ts in arrival.items():
        done = sent.get(hop.get(qid, "") if relayed else qid)
        if done is not None:
            delays.append(done - ts)
            last = max(last, done)
    first = min(connects) if connects else 0.0
    elapsed = last - first if delays and first else float("nan")
    # Distinct processes per daemon that logged: how many were started (by master or by systemd).
    procs: dict[str, set[int]] = {}
    for where, lines in (("edge", ingress), ("delivery", final)) if relayed else (("host", ingress),):
        for ln in lines:
            procs.setdefault(f"{where} {ln.ident.rsplit('/', 1)[-1]}", set()).add(ln.pid)
    return {
        "daemon_processes": {k: len(v) for k, v in sorted(procs.items())},
        "accepted": len(arrival), "delivered": len(delays), "deferred_or_bounced": problems,
        "elapsed": round(elapsed, 3), "msgs_per_s": round(len(delays) / elapsed, 1) if delays else 0.0,
        "delay_p50": round(percentile(delays, 50), 3), "delay_p99": round(percentile(delays, 99), 3),
    }


def measure(rounds: int, messages: int, sizes: list[int], concurrencies: list[int], warmup: int,
            with_master_fleet: bool = True, configs: set[str] | None = None) -> dict[str, Any]:
    client = PREFIX + "client1"
    tgs = [t for t in targets(with_master_fleet) if configs is None or t.key in configs]
    out: dict[str, Any] = {"targets": {t.key: t.name for t in tgs}, "rounds": [], "warmup": []}
    if warmup:
        # First mail after start-up: master-less pools grow from zero here. Reported, not in the medians.
        for t in tgs:
            res = one_round(t, client, warmup, 2048, max(concurrencies))
            out["warmup"].append(res)
            say(f"warm-up {t.key}: {res['delivered']}/{warmup} at {res['msgs_per_s']} msg/s, p99 {res['delay_p99']} s")
    for r in range(rounds):
        for conc in concurrencies:
            for size in sizes:
                # Rotate the order each round so that no configuration always runs first.
                order = tgs[r % len(tgs):] + tgs[:r % len(tgs)]
                for t in order:
                    res = one_round(t, client, messages, size, conc)
                    res["round"] = r + 1
                    out["rounds"].append(res)
                    flag = "" if res["complete"] else "  INCOMPLETE"
                    say(f"round {r + 1} {t.key} c={conc} {size // 1024} kB: {res['delivered']}/{messages} in "
                        f"{res['elapsed']} s = {res['msgs_per_s']} msg/s, delay p50 {res['delay_p50']} s "
                        f"p99 {res['delay_p99']} s, {res['cpu_ms_per_msg']} CPU ms/msg{flag}")
    out["summary"] = summarize(out["rounds"])
    out["ratios"] = ratios(out["rounds"])
    out["cold"] = cold_ratio(out["warmup"])
    out["cpu_ratios"] = cpu_ratios(out["summary"])
    return out


def summarize(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for conc, size, key in sorted({(r["concurrency"], r["size"], r["target"]) for r in rounds}):
        rs = [r for r in rounds if (r["concurrency"], r["size"], r["target"]) == (conc, size, key)]
        rate = [r["msgs_per_s"] for r in rs]
        rows.append({
            "concurrency": conc, "size": size, "target": key, "rounds": len(rs),
            "delivered": sum(r["delivered"] for r in rs), "sent": sum(r["messages"] for r in rs),
            "msgs_per_s": median(rate), "msgs_per_s_min": min(rate), "msgs_per_s_max": max(rate),
            "elapsed": median([r["elapsed"] for r in rs]),
            "delay_p50": median([r["delay_p50"] for r in rs]), "delay_p99": median([r["delay_p99"] for r in rs]),
            "cpu_ms_per_msg": median([r["cpu_ms_per_msg"] for r in rs]),
            "cpu_ms_per_msg_ingress": median([r["cpu_ms_per_msg_ingress"] for r in rs]),
            "cpu_ms_per_msg_final": median([r["cpu_ms_per_msg_final"] for r in rs]),
            "unit_starts": {role: median([r.get("unit_starts", {}).get(role, 0) for r in rs]) for role in rs[0].get("unit_starts", {})},
            "cpu_breakdown": {role: {k: median([r["cpu_breakdown"][role].get(k, 0.0) for r in rs]) for k in part}
                              for role, part in rs[0].get("cpu_breakdown", {}).items()},
        })
    return rows


def ratios(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """msg/s ratios per round (the two runs of a round are neighbours in time), their median and range."""
    by = {(r["concurrency"], r["size"], r["target"], r["round"]): r["msgs_per_s"] for r in rounds}
    out = []
    for conc, size in sorted({(r["concurrency"], r["size"]) for r in rounds}):
        for new, base, goal, what in RATIOS:
            xs = [by[(conc, size, new, n)] / by[(conc, size, base, n)]
                  for (c, s, t, n) in by if (c, s, t) == (conc, size, new) and by.get((conc, size, base, n))]
            if xs:
                med_new = median([by[k] for k in by if k[:3] == (conc, size, new)])
                med_base = median([by[k] for k in by if k[:3] == (conc, size, base)])
                out.append({"concurrency": conc, "size": size, "new": new, "base": base, "what": what, "target": goal,
                            "ratio": round(median(xs), 2), "min": round(min(xs), 2), "max": round(max(xs), 2),
                            "ratio_of_medians": round(med_new / med_base, 2) if med_base else None,
                            "met": None if goal is None else median(xs) >= goal})
    return out


def cold_ratio(warmup: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The cold burst (warm-up round, one per configuration): B/A of msg/s against its goal."""
    new, base, goal = COLD_TARGET
    rate = {w["target"]: w["msgs_per_s"] for w in warmup}
    if not rate.get(new) or not rate.get(base):
        return None
    ratio = rate[new] / rate[base]
    return {"new": new, "base": base, "target": goal, "ratio": round(ratio, 2), "new_msgs_per_s": rate[new],
            "base_msgs_per_s": rate[base], "met": ratio >= goal}


def cpu_ratios(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CPU per message of the split fleet (C) against the stock single instance (A), medians over rounds."""
    out = []
    by = {(s["concurrency"], s["size"], s["target"]): s for s in summary}
    for (conc, size, key), split in sorted(by.items()):
        single = by.get((conc, size, "A"))
        if key != "C" or not single or not single["cpu_ms_per_msg"]:
            continue
        for field, goal, what in CPU_TARGETS:
            ratio = split[field] / single["cpu_ms_per_msg"]
            out.append({"concurrency": conc, "size": size, "what": what, "field": field, "split_ms": split[field],
                        "single_ms": single["cpu_ms_per_msg"], "ratio": round(ratio, 2), "target": goal,
                        "met": ratio <= goal})
    return out


def cpu(s: dict[str, Any]) -> str:
    if s["target"] in ("A", "B"):
        return f"{s['cpu_ms_per_msg']:.1f}"
    return f"{s['cpu_ms_per_msg']:.1f} = {s['cpu_ms_per_msg_ingress']:.1f} + {s['cpu_ms_per_msg_final']:.1f}"


def render(summary: list[dict[str, Any]], names: dict[str, str], warmup: list[dict[str, Any]] | None = None) -> str:
    """One row per configuration and size; the cold burst (warm-up round, pools from zero) beside the first size."""
    cold = {w["target"]: w for w in warmup or []}
    first = (summary[0]["concurrency"], summary[0]["size"]) if summary else None
    rows = []
    for s in summary:
        w = cold.get(s["target"]) if (s["concurrency"], s["size"]) == first else None
        rows.append([s["concurrency"], f"{s['size'] // 1024} kB", f"{s['target']}: {names[s['target']]}",
                     f"{s['msgs_per_s']:.0f} ({s['msgs_per_s_min']:.0f}–{s['msgs_per_s_max']:.0f})",
                     f"{w['msgs_per_s']:.0f} ({sum(w.get('unit_starts', {}).values())})" if w else "–", f"{s['elapsed']:.2f}",
                     f"{s['delay_p50']:.3f}", f"{s['delay_p99']:.3f}", cpu(s), f"{s['delivered']}/{s['sent']}"])
    return table(["conc.", "size", "configuration", "warm msg/s median (range)", "cold burst msg/s (unit starts)",
                  "elapsed s", "delay p50 s", "delay p99 s", "CPU ms/msg (edge + delivery)", "delivered"], rows)


def render_breakdown(summary: list[dict[str, Any]], names: dict[str, str]) -> str:
    """Where the CPU per message goes (medians), first size and concurrency only."""
    if not summary:
        return ""
    first = (summary[0]["concurrency"], summary[0]["size"])
    kinds = ["postfix daemons and rest", "master", "holder", "systemd (PID 1)", "journald"]
    rows = []
    for s in summary:
        if (s["concurrency"], s["size"]) != first:
            continue
        for role, part in s.get("cpu_breakdown", {}).items():
            starts = s.get("unit_starts", {}).get(role)
            rows.append([f"{s['target']}: {names[s['target']]}", role] +
                        [f"{part[k]:.2f}" if k in part else "–" for k in kinds] + ["–" if starts is None else f"{starts:.0f}"])
    head = f"CPU ms per message by process, {first[1] // 1024} kB at concurrency {first[0]} (medians)"
    return head + "\n" + table(["configuration", "host", *kinds, "unit starts per round"], rows)


def _met(met: bool | None) -> str:
    return "–" if met is None else "yes" if met else "NO"


def render_ratios(items: list[dict[str, Any]], cold: dict[str, Any] | None = None,
                  cpu_items: list[dict[str, Any]] | None = None) -> str:
    """msg/s ratios (warm rounds, then the cold burst) and the split fleet's CPU against one instance."""
    rows = [[f"{r['new']}/{r['base']}", r["what"], r["concurrency"], f"{r['size'] // 1024} kB",
             f"{r['ratio']:.2f}× ({r['min']:.2f}–{r['max']:.2f})", f"{r['ratio_of_medians']:.2f}×",
             "–" if r["target"] is None else f"≥ {r['target']}×", _met(r.get("met"))] for r in items]
    if cold:
        rows.append([f"{cold['new']}/{cold['base']}", "cold burst: warm-up round, pools from zero", "", "2 kB",
                     f"{cold['ratio']:.2f}× ({cold['new_msgs_per_s']:.0f} vs {cold['base_msgs_per_s']:.0f} msg/s)", "",
                     f"≥ {cold['target']}×", _met(cold["met"])])
    text = table(["ratio", "compares", "conc.", "size", "msg/s ratio, median of rounds (range)", "ratio of medians",
                  "target", "met"], rows)
    if cpu_items:
        cpu_rows = [[f"C/A {c['what']}", c["concurrency"], f"{c['size'] // 1024} kB",
                     f"{c['split_ms']:.2f} vs {c['single_ms']:.2f}", f"{c['ratio']:.2f}×", f"≤ {c['target']}×",
                     _met(c["met"])] for c in cpu_items]
        heads = ["CPU per message", "conc.", "size", "ms/msg split vs single (medians)", "ratio", "target", "met"]
        text += "\n\n" + table(heads, cpu_rows)
    return text
