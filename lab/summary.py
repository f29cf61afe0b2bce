# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Print the lab summary: hosts, Postfix instances and services, playbook and probe results, the fleet's status table."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from typing import Any

LABEL = "io.mailfleet.lab=fleet"
NETWORK = "mailfleet-lab"
PREFIX = "mailfleet-lab-"
GROUP_ORDER = {"edge": 0, "delivery": 1, "client": 2}
INSPECT = '{{index .Config.Labels "io.mailfleet.lab.group"}} {{.State.Status}} {{(index .NetworkSettings.Networks "' + NETWORK + '").IPAddress}}'
# One shell round trip per host: instances, then postfix, ssh and sandbox states, then master.cf services.
HOST_PROBE = (
    "postmulti -l 2>/dev/null | awk '{print $1, $3, $4}';"
    " echo '--';"
    " postfix status >/dev/null 2>&1 && echo running || echo stopped;"
    " systemctl is-active ssh.service;"
    " f=/etc/.mailfleet-sandbox-check;"
    " if systemd-run --wait -q --collect -p ProtectSystem=strict touch $f 2>/dev/null;"
    " then rm -f $f; echo NOT-enforced; else echo enforced; fi;"
    " echo '--';"
    " postconf -M 2>/dev/null | wc -l;"
    " echo '--';"
    # Per instance: how it runs (a master-less instance has an active postfix-NAME.target) and
    # what it does with mail.
    " postmulti -l 2>/dev/null | while read -r name _ _ dir; do"
    "   short=${name#postfix-}; [ \"$name\" = - ] && short=default;"
    "   if systemctl is-active -q \"postfix-$short.target\"; then mode=master-less;"
    "   elif postfix -c \"$dir\" status >/dev/null 2>&1; then mode=master; else mode=stopped; fi;"
    "   set -- $(postconf -c \"$dir\" -x -h relay_domains relay_transport mydestination inet_interfaces"
    "     | sed 's/[ ,]\\+/,/g; s/^$/-/');"
    "   echo \"$name|$mode|$1|$2|$3|$4\";"
    " done"
)
COLUMNS = "  {:<10} {:<9} {:<13} {:<8} {:<7} {:<11} {:<11} {}"


def podman(*args: str) -> str:
    """Run podman and return stdout ('' on failure)."""
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def lab_hosts() -> list[dict[str, str]]:
    """Lab containers with group, state and address; edge hosts first."""
    listing = podman("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}").split()
    hosts = []
    for name in (n for n in listing if n.startswith(PREFIX)):
        group, state, ip = (podman("inspect", "--format", INSPECT, name).split() + ["", "", ""])[:3]
        hosts.append({"name": name.removeprefix(PREFIX), "container": name, "group": group, "state": state, "ip": ip})
    return sorted(hosts, key=lambda h: (GROUP_ORDER.get(h["group"], 9), h["name"]))


def host_details(container: str) -> list[str]:
    """Return postfix, ssh and sandbox states, master.cf service count and instances for one host."""
    parts = podman("exec", container, "sh", "-c", HOST_PROBE).split("--\n") + ["", "", "", ""]
    instances = []
    for line in parts[0].strip().splitlines():
        name, enabled, config_dir = (line.split() + ["", "", ""])[:3]
        label = "default" if name == "-" else name
        instances.append(f"{label} {config_dir}{'' if enabled in ('y', '-') else ' (disabled)'}")
    states = (parts[1].split() + ["?", "?", "?"])[:3]
    return [*states, parts[2].strip() or "?", ", ".join(instances) or "none", parts[3]]


def topology_lines(hosts: list[dict[str, str]], details: dict[str, list[str]]) -> list[str]:
    """Where mail flows: the groups in order, then what each managed instance does with mail."""
    by_group: dict[str, list[str]] = {}
    for host in hosts:
        by_group.setdefault(host["group"], []).append(host["name"])
    tiers = [", ".join(by_group[g]) for g in ("client", "edge", "delivery") if g in by_group]
    lines = ["topology: " + " -> ".join(tiers)] if tiers else []
    for host in hosts:
        if host["group"] not in ("edge", "delivery"):
            continue
        for row in details.get(host["name"], ["", "", "", "", "", ""])[5].strip().splitlines():
            name, mode, relay_domains, relay_transport, mydestination, interfaces = (row.split("|") + ["-"] * 6)[:6]
            label = "default" if name == "-" else name
            if relay_domains != "-":
                role = f"relays {relay_domains} via {relay_transport}"
            else:
                role = f"delivers locally for {mydestination}"
            lines.append(f"  {host['name']:<10} {label:<14} {mode:<11} listens on {interfaces}; {role}")
    return lines


def load(path: str) -> dict[str, Any] | None:
    """Read a callback record, or None if the playbook did not get as far as writing one."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def playbook_lines(name: str, record: dict[str, Any] | None, state: str) -> list[str]:
    """Ok with counts, or which host failed at which task and why."""
    log = os.path.join(os.path.relpath(state), f"{name}.log")
    if record is None:
        return [f"{name}: did not finish (see {log})"]
    seconds = record.get("seconds", "?")
    failures = record.get("failures", [])
    if not failures:
        changed = sum(h.get("changed", 0) for h in record.get("hosts", {}).values())
        return [f"{name}: ok in {seconds} s, {changed} changed, hosts {', '.join(record.get('hosts', {}))}"]
    lines = [f"{name}: FAILED after {seconds} s (full output: {log})"]
    for fail in failures:
        what = "unreachable" if fail.get("unreachable") else "failed"
        msg = " ".join(str(fail.get("msg", "")).split())[:300]
        lines.append(f"  {fail['host']} {what} at task '{fail['task']}': {msg}")
    return lines


def probe_lines(record: dict[str, Any] | None) -> list[str]:
    """Per-edge results that playbooks/probe.yml recorded with set_stats."""
    probe = (record or {}).get("stats", {}).get("probe", {})
    lines = []
    for edge, seconds in sorted(probe.get("seconds", {}).items()):
        message_id = probe.get("message_ids", {}).get(edge, "?")
        lines.append(f"  via {edge}: in {probe.get('rcpt')}'s mailbox on {probe.get('delivery')} (waited {seconds} s), Message-ID <{message_id}>")
    if "direct_refused" in probe:
        verdict = "refused, as intended" if probe["direct_refused"] else "ACCEPTED, but must be refused"
        lines.append(f"  client straight to the delivery host: {verdict}")
    return lines


def status_lines(record: dict[str, Any] | None, state: str) -> tuple[list[str], bool]:
    """The fleet's status table (playbooks/status.yml recorded it with set_stats) and whether an
    instance is down. A queue above a threshold is shown, but does not make the lab fail."""
    table = (record or {}).get("stats", {}).get("status")
    if not isinstance(table, dict) or not table.get("lines"):
        log = os.path.join(os.path.relpath(state), "status.log")
        return [f"status: no table (see {log})"], True
    down = bool(table.get("down"))
    verdict = "an instance is DOWN" if down else "ok" if table.get("ok") else "ok, a queue is above its threshold"
    return [f"status (playbooks/status.yml): {verdict}"] + [f"  {line}" for line in table["lines"]], down


def main() -> int:
    """Print the summary; exit 1 unless site and probe both succeeded and no instance is down (or only a status
    was asked)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state", required=True, help="the lab state directory")
    parser.add_argument("--image", default="", help="image reference the fleet runs")
    parser.add_argument("--fleet", default="running", help="created, reused or running")
    parser.add_argument("--seconds", type=int, default=-1, help="wall time of lab.sh up")
    args = parser.parse_args()

    site = load(os.path.join(args.state, "site.json"))
    probe = load(os.path.join(args.state, "probe.json"))
    site_ok = bool(site and not site["failures"])
    ok = site_ok and bool(probe and not probe["failures"])
    status_record = load(os.path.join(args.state, "status.json"))
    status, down = status_lines(status_record, args.state) if site_ok or status_record else ([], False)
    ok = ok and not down
    took = f" in {args.seconds} s" if args.seconds >= 0 else ""
    image = f", image {args.image}" if args.image else ""
    print(f"\n== mailfleet lab: {'READY' if ok else 'NOT READY'}{took} (fleet {args.fleet}{image})")
    print(COLUMNS.format("host", "group", "address", "postfix", "ssh", "sandboxing", "master.cf", "instances"))
    hosts = lab_hosts()
    details: dict[str, list[str]] = {}
    for host in hosts:
        row = host_details(host["container"]) if host["state"] == "running" else [host["state"], "-", "-", "-", "-", ""]
        details[host["name"]] = row
        print(COLUMNS.format(host["name"], host["group"], host["ip"], *row[:3], f"{row[3]} entries", row[4]))
    lines = topology_lines(hosts, details) + playbook_lines("site", site, args.state)
    if site_ok:
        lines += playbook_lines("probe", probe, args.state) + probe_lines(probe)
    else:
        lines.append("probe: not run (site failed)")
    lines += status
    for line in lines:
        print(f"  {line}")
    if hosts:
        key = os.path.relpath(os.path.join(args.state, "id_ed25519"))
        inventory = os.path.relpath(os.path.join(args.state, "inventory.ini"))
        print(f"  log in: ssh -i {key} root@{hosts[0]['ip']}  or  podman exec -it {hosts[0]['container']} bash")
        print(f"  inventory: {inventory}    remove the lab: make lab-down")
    return 0 if ok or args.fleet == "running" else 1


if __name__ == "__main__":
    raise SystemExit(main())
