# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Idle footprint: resident Postfix-related processes and their PSS/RSS, after a time without mail.

"Postfix-related" is every process in a cgroup whose path names postfix: Debian's postfix@-.service,
the collection's postfix-NAME-master.service, or the master-less postfix-NAME.slice (status holder
and pools included).
"""

from __future__ import annotations

import json
from typing import Any

from benchlib import pypexec, table

# Runs inside a container; needs --privileged to read smaps_rollup of set-uid daemons.
PROBE = r"""
import json, os
procs = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cgroup = open(f"/proc/{pid}/cgroup").read()
        if "postfix" not in cgroup:
            continue
        comm = open(f"/proc/{pid}/comm").read().strip()
        mem = {}
        for line in open(f"/proc/{pid}/smaps_rollup"):
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                mem[key] = int(rest.split()[0])
        unit = [p for p in cgroup.split("/") if "postfix" in p][-1].strip()
        procs.append({"pid": int(pid), "comm": comm, "unit": unit, "pss_kib": mem.get("Pss", 0), "rss_kib": mem.get("Rss", 0)})
    except (OSError, IndexError):
        pass
print(json.dumps(procs))
"""


TARGET = 1.2  # idle PSS, master-less / master, on every host


def measure(containers: dict[str, str]) -> dict[str, Any]:
    """containers: label -> container name. Returns per label: processes, PSS, RSS and by command."""
    out: dict[str, Any] = {}
    for label, name in containers.items():
        procs = json.loads(pypexec(name, PROBE, privileged=True))
        by_comm: dict[str, dict[str, int]] = {}
        for p in procs:
            entry = by_comm.setdefault(p["comm"], {"count": 0, "pss_kib": 0})
            entry["count"] += 1
            entry["pss_kib"] += p["pss_kib"]
        out[label] = {
            "container": name, "processes": len(procs),
            "pss_kib": sum(p["pss_kib"] for p in procs), "rss_kib": sum(p["rss_kib"] for p in procs),
            "by_command": dict(sorted(by_comm.items(), key=lambda kv: -kv[1]["pss_kib"])),
        }
    return out


def render(result: dict[str, Any], pairs: list[tuple[str, str]]) -> str:
    rows = []
    for label, r in result.items():
        comms = ", ".join(f"{c}×{v['count']}" if v["count"] > 1 else c for c, v in r["by_command"].items())
        rows.append([label, r["processes"], f"{r['pss_kib'] / 1024:.1f}", f"{r['rss_kib'] / 1024:.1f}", comms])
    text = table(["host", "processes", "PSS MiB", "RSS MiB", "processes by command (largest PSS first)"], rows)
    for new, base in pairs:
        if new in result and base in result and result[base]["pss_kib"]:
            ratio = result[new]["pss_kib"] / result[base]["pss_kib"]
            text += (f"\nPSS {new} / {base}: {ratio:.2f}× (target ≤ {TARGET}× on every host: "
                     f"{'met' if ratio <= TARGET else 'NOT met'})")
    return text
