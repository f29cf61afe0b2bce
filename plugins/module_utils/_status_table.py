# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet's status table (the status playbook): instance_info results of every host, judged
against queue thresholds, problems first.

Private to the mailfleet.postfix collection; the API may change without notice.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from ._postfix_queue import printable_line

COLUMNS = ("host", "tier", "instance", "mode", "health", "queues", "oldest deferred", "exposure", "notes")
TIERS = ("edge", "delivery")  # groups mailfleet_edge, mailfleet_delivery (playbooks/tiers.yml)
REASON_WIDTH = 80
SHOWN = ("deferred", "active", "hold", "incoming", "maildrop")  # what an operator looks at first


def tier_of(host: str, groups: Mapping[str, Sequence[str]]) -> str:
    """edge, delivery, edge+delivery, or - for a host in neither tier."""
    tiers = [t for t in TIERS if host in (groups.get(f"mailfleet_{t}") or ())]
    return "+".join(tiers) or "-"


def age(seconds: Optional[int]) -> str:
    """A short human age: 45s, 12m, 3h05m, 2d04h."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _queues(counts: Mapping[str, int]) -> str:
    busy = [f"{q} {counts[q]}" for q in SHOWN if counts.get(q)]
    return ", ".join(busy) or "empty"


def _short(text: str, width: int = REASON_WIDTH) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def breaches(instance: Mapping[str, Any], limits: Mapping[str, Optional[int]]) -> list[str]:
    """The thresholds an instance is above: limits maps a queue name to its maximum messages and
    'oldest_deferred_age' to seconds; None means no limit."""
    out = []
    queues = instance.get("queues") or {}
    for name, limit in limits.items():
        if limit is None:
            continue
        value = instance.get(name) if name == "oldest_deferred_age" else queues.get(name)
        if value is not None and value > limit:
            shown = age(value) if name == "oldest_deferred_age" else str(value)
            label = "oldest deferred" if name == "oldest_deferred_age" else name
            out.append(f"{label} {shown} > {age(limit) if name == 'oldest_deferred_age' else limit}")
    return out


def _host_row(host: str, tier: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """A host whose status could not be read: down."""
    why = "unreachable" if result.get("unreachable") else "instance_info failed"
    msg = " ".join(str(result.get("msg") or "no result").split())
    return {"host": host, "tier": tier, "instance": "-", "mode": "-", "health": "down", "severity": 2,
            "deferred": 0, "queues": "-", "oldest deferred": "-", "exposure": "-",
            "notes": _short(f"{why}: {msg}", 160), "fails": [f"{host}: {why}: {msg}"]}


def rows(results: Mapping[str, Optional[Mapping[str, Any]]], groups: Mapping[str, Sequence[str]],
         limits: Mapping[str, Optional[int]], fail_on_degraded: bool = False) -> list[dict[str, Any]]:
    """One row per instance (per host when its status could not be read), problems first: down,
    then above a threshold, then degraded, then by deferred mail."""
    out = []
    for host in results:
        result = results[host] or {"msg": "no result (the host did not run the status task)"}
        tier = tier_of(host, groups)
        if result.get("unreachable") or result.get("failed") or "instances" not in result:
            out.append(_host_row(host, tier, result))
            continue
        try:
            out += [_instance_row(host, tier, inst, limits, fail_on_degraded) for inst in result["instances"]]
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            # One host's malformed result (a compromised host) is that host down, not the table gone.
            out.append(_host_row(host, tier, {"failed": True, "msg": f"malformed instance_info result ({exc!r})"}))
    return sorted(out, key=lambda r: (-r["severity"], not r.get("over"), -r["deferred"], r["host"], r["instance"]))


def _instance_row(host: str, tier: str, inst: Mapping[str, Any], limits: Mapping[str, Optional[int]],
                  fail_on_degraded: bool) -> dict[str, Any]:
    if not isinstance(inst, Mapping) or not isinstance(inst["name"], str):
        raise TypeError("an instance is not a mapping with a name")
    severity = inst.get("severity", 0)
    if not isinstance(severity, int) or isinstance(severity, bool) or not 0 <= severity <= 2:
        raise ValueError(f"severity {severity!r}")
    over = breaches(inst, limits)
    reasons = inst.get("deferral_reasons") or []
    notes = list(inst.get("problems") or []) + over
    if reasons:
        top = reasons[0]
        notes.append(f"deferred: {_short(top['reason'])} ({top['recipients']} rcpt)")
    fails = []
    label = f"{host} {inst['name']}"
    if severity >= 2 or (fail_on_degraded and severity >= 1):
        fails.append(f"{label}: {inst.get('health')}: " + "; ".join(inst.get("problems") or []))
    fails += [f"{label}: {b}" for b in over]
    exposure = inst.get("exposure_max")
    return {
        "host": host, "tier": tier, "instance": inst["name"], "mode": inst.get("mode") or "-",
        "health": inst.get("health", "-") + ("!" if over else ""), "severity": severity,
        "over": bool(over), "deferred": int((inst.get("queues") or {}).get("deferred", 0)),
        "queues": _queues(inst.get("queues") or {}), "oldest deferred": age(inst.get("oldest_deferred_age")),
        "exposure": "-" if exposure is None else f"{float(exposure):.1f}", "notes": "; ".join(notes),
        "fails": [printable_line(f) for f in fails]}


def render(table: Sequence[Mapping[str, Any]]) -> list[str]:
    """The rows as aligned text lines, a header first; the last column is not padded."""
    cells = [list(COLUMNS)] + [[printable_line(str(r[c])) for c in COLUMNS] for r in table]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS) - 1)]
    return ["  ".join([v.ljust(w) for v, w in zip(line, widths)] + [line[-1]]).rstrip() for line in cells]


def fleet_status(results: Mapping[str, Optional[Mapping[str, Any]]], groups: Mapping[str, Sequence[str]],
                 limits: Mapping[str, Optional[int]], fail_on_degraded: bool = False) -> dict[str, Any]:
    """The table as lines, the rows, and what makes the check fail (empty: it passes)."""
    table = rows(results, groups, limits, fail_on_degraded)
    failures = [f for r in table for f in r["fails"]]
    counts = {h: sum(1 for r in table if r["health"].rstrip("!") == h) for h in ("down", "degraded", "ok")}
    summary = (f"{len(results)} hosts: {counts['down']} down, {counts['degraded']} degraded, "
               f"{sum(1 for r in table if r.get('over'))} above a threshold, {counts['ok']} ok")
    return {"lines": render(table) + [summary], "rows": [{k: v for k, v in r.items() if k != "fails"} for r in table],
            "failures": failures, "ok": not failures}
