# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The status of one instance as the instance_info module reports it: pure functions over what
``_status_observe`` read from the host.

Private to the mailfleet.postfix collection; the API may change without notice.

Unit names come from the naming rules of each mode, never spelled again here:
``_masterless_units`` (``Instance.prefix``, ``unit_base``, ``_masterless_bridge.own_unit``) and
``_classic_unit`` (``ClassicInstance.unit``, ``managed_units``); the distribution's units are
``_masterless_generator.master_units``.
"""

from __future__ import annotations

import datetime
from typing import Any, Mapping, Optional, Sequence

from ._host import Record
from ._masterless_bridge import own_unit
from ._masterless_units import Instance, unit_base
from ._postfix_instances import WILDCARD, address_scope, inet_endpoints
from ._postfix_mastercf import MasterCfError
from ._postfix_queue import QUEUES, QueueSummary

MASTERLESS = "masterless"
MASTER = "master"
# UnitFileState values of a unit that starts at boot: generated covers the master-less units,
# which the generator links into the boot transaction itself.
ENABLED_STATES = ("enabled", "enabled-runtime", "generated", "indirect", "alias")
HEALTH = {0: "ok", 1: "degraded", 2: "down"}
# Listener scopes that are not reachable from other hosts.
LOCAL_SCOPES = ("loopback",)


class InstanceSeen(Record):
    """Everything read from the host about one instance, before any judgement."""

    _fields = ("name", "config_directory", "queue_directory", "params", "master_cf", "masterless",
               "stored_units", "states", "rows", "master_units", "master_pid", "queue", "queue_error",
               "last_delivery", "log", "exposure")
    name: str  # multi_instance_name, '-' for the primary
    config_directory: str
    queue_directory: str
    params: dict[str, str]  # postconf -x values
    master_cf: Optional[str]  # master.cf text; None when unreadable
    masterless: bool  # the generator has a .conf for it
    stored_units: tuple[str, ...]  # the master-less unit set in effect (names)
    states: dict[str, dict[str, str]]  # systemctl show of the named units (empty without systemd)
    rows: list[list[str]]  # systemctl list-units rows of the instance's own units (template instances)
    master_units: tuple[str, ...]  # units that may run master(8) for it: the collection's, the distribution's
    master_pid: Optional[int]
    queue: Optional[QueueSummary]
    queue_error: Optional[str]
    last_delivery: Optional[float]
    log: Optional[str]  # the log the last delivery was found in
    exposure: dict[str, Optional[float]]  # unit -> systemd-analyze security score


def instance_of(name: str, params: Mapping[str, str]) -> Instance:
    """The master-less naming of the instance (prefix, target, holder)."""
    return Instance.from_params({k: v for k, v in params.items() if k in Instance._fields}, name=name)


def listeners(master_cf: str, params: Mapping[str, str], *, origin: str) -> list[dict[str, Any]]:
    """The TCP endpoints master(8) (or systemd) listens on for the instance: running inet entries."""
    return [{"service": entry.service, "command": entry.parsed.fields["command"], "address": address, "port": port,
             "scope": "wildcard" if address == WILDCARD else address_scope(address)}
            for entry, address, port in inet_endpoints(master_cf, params, origin=origin)]


def network_facing(listener: Mapping[str, Any]) -> bool:
    return listener["scope"] not in LOCAL_SCOPES and listener["address"] not in ("localhost", "127.0.0.1", "::1")


def supervisor(master_units: Sequence[str], states: Mapping[str, Mapping[str, str]]) -> Optional[str]:
    """The unit that runs master(8): the first active one, else the first that exists (the
    collection's unit comes first in ``master_units``)."""
    present = [u for u in master_units if states.get(u, {}).get("LoadState") not in (None, "not-found")]
    active = [u for u in present if states[u].get("ActiveState") in ("active", "activating", "reloading")]
    found = active or present
    return found[0] if found else None


def exposed_units(seen: InstanceSeen, listening: Sequence[Mapping[str, Any]]) -> list[str]:
    """Units whose processes accept connections from the network: master(8)'s unit in master mode
    (every daemon runs in it); in master-less mode the services of network-facing inet entries
    (a template is analysed as its instance 1)."""
    services = list(dict.fromkeys(item["service"] for item in listening if network_facing(item)))
    if not services:
        return []
    if not seen.masterless:
        unit = supervisor(seen.master_units, seen.states)
        return [unit] if unit else []
    inst = instance_of(seen.name, seen.params)
    out = []
    for service in services:
        base = unit_base(inst, service, "inet")
        if f"{base}.service" in seen.stored_units:
            out.append(f"{base}.service")
        elif f"{base}@.service" in seen.stored_units:
            out.append(f"{base}@1.service")
    return out


def named_units(seen_name: str, params: Mapping[str, str], masterless: bool, stored: Sequence[str],
                master_units: Sequence[str]) -> list[str]:
    """The units to ask systemctl about: the master-less set without its templates, or the units
    that may run master(8)."""
    if not masterless:
        return list(master_units)
    inst = instance_of(seen_name, params)
    fixed = [inst.target, inst.holder + ".socket", inst.holder + ".service"]
    return list(dict.fromkeys(fixed + [u for u in stored if "@." not in u]))


def _iso(when: Optional[float]) -> Optional[str]:
    if when is None:
        return None
    try:
        return datetime.datetime.fromtimestamp(when, datetime.timezone.utc).isoformat(timespec="seconds")
    except (ValueError, OverflowError, OSError):  # out of datetime's range
        return None


def _active(state: Mapping[str, str]) -> bool:
    # auto-restart: it exited and systemd will start it again; not running meanwhile
    return state.get("ActiveState") in ("active", "activating", "reloading") and state.get("SubState") != "auto-restart"


def restarting(state: Mapping[str, str]) -> bool:
    """A unit in a crash loop: waiting to restart, or starting again after abnormal exits (the
    daemons' units throttle like master(8) does instead of failing, so they never reach failed)."""
    if state.get("SubState") == "auto-restart":
        return True
    restarts = state.get("NRestarts", "0")
    return state.get("ActiveState") == "activating" and restarts.isdigit() and int(restarts) > 0


def units_of(seen: InstanceSeen) -> list[dict[str, str]]:
    """The instance's units that exist, each with its state; template instances from list-units."""
    out: dict[str, dict[str, str]] = {}
    for unit, state in seen.states.items():
        if state.get("LoadState") in (None, "not-found") and state.get("ActiveState") != "failed":
            continue
        out[unit] = {"name": unit, "load": state.get("LoadState", ""), "active": state.get("ActiveState", ""),
                     "sub": state.get("SubState", "")}
    for unit, load, active, sub in (row[:4] for row in seen.rows):
        out.setdefault(unit, {"name": unit, "load": load, "active": active, "sub": sub})
    return [out[k] for k in sorted(out)]


def report(seen: InstanceSeen, now: float) -> dict[str, Any]:
    """The instance's entry in the module's ``instances``: state, queue, deliveries, exposure, and
    a judgement (``health``, ``severity``, ``problems``) a status table sorts by."""
    inst = instance_of(seen.name, seen.params)
    problems: list[str] = []
    units = units_of(seen)
    failed = [u["name"] for u in units if u["active"] == "failed"]
    looping = [u["name"] for u in units if u["active"] != "failed"
               and restarting(seen.states.get(u["name"], {"ActiveState": u["active"], "SubState": u["sub"]}))]
    if seen.masterless:
        supervising: Optional[str] = inst.target
        running = all(_active(seen.states.get(u, {})) for u in (inst.target, inst.holder + ".service"))
        not_listening = [u["name"] for u in units if u["name"].endswith(".socket") and own_unit(inst.prefix, u["name"])
                         and not (u["active"] == "active" and u["sub"] in ("listening", "running"))]
    else:
        supervising = supervisor(seen.master_units, seen.states)
        unit_running = supervising is not None and _active(seen.states[supervising])
        running = unit_running or seen.master_pid is not None
        not_listening = []
        if running and not unit_running and supervising is not None:
            problems.append(f"master(8) runs outside {supervising} (pid {seen.master_pid})")
    state = seen.states.get(supervising or "", {})
    enabled = None if not state or state.get("LoadState") == "not-found" else \
        state.get("UnitFileState", "") in ENABLED_STATES
    if not running:
        problems.append("not running")
    if failed:
        problems.append("failed units: " + ", ".join(failed))
    if looping:
        problems.append("restarting after abnormal exits: " + ", ".join(looping))
    if running and not_listening:
        problems.append("not listening: " + ", ".join(not_listening))
    if seen.master_cf is None:
        problems.append(f"{seen.config_directory}/master.cf is not readable")
        listening: list[dict[str, Any]] = []
    else:
        try:
            listening = listeners(seen.master_cf, seen.params, origin=f"{seen.config_directory}/master.cf")
        except MasterCfError as exc:
            problems.append(str(exc))
            listening = []
    if seen.queue_error:
        problems.append(seen.queue_error)
    queue = seen.queue
    counts = dict(queue.counts) if queue else {}
    oldest = queue.oldest_deferred if queue else None
    scores = [s for s in seen.exposure.values() if s is not None]
    severity = 2 if not running else 1 if problems else 0
    return {
        "name": seen.name,
        "short_name": inst.short_name,
        "config_directory": seen.config_directory,
        "queue_directory": seen.queue_directory,
        "mode": MASTERLESS if seen.masterless else MASTER,
        "supervisor": supervising,
        "enabled": enabled,
        "running": running,
        "units": units,
        "failed_units": failed,
        "listeners": listening,
        "queues": {q: counts.get(q, 0) for q in QUEUES},
        "queue_total": sum(counts.get(q, 0) for q in QUEUES),
        "queue_source": queue.source if queue else None,
        "oldest_deferred": _iso(oldest),
        "oldest_deferred_age": None if oldest is None else max(0, int(now - oldest)),
        "deferral_reasons": [{"reason": r, "recipients": n} for r, n in (queue.reasons if queue else [])],
        "last_delivery": _iso(seen.last_delivery),
        "last_delivery_epoch": None if seen.last_delivery is None else int(seen.last_delivery),
        "last_delivery_age": None if seen.last_delivery is None else max(0, int(now - seen.last_delivery)),
        "mail_log": seen.log,
        "exposure": dict(seen.exposure),
        "exposure_max": max(scores) if scores else None,
        "health": HEALTH[severity],
        "severity": severity,
        "problems": problems,
    }


def ordered(reports: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Problems first (down, then degraded), then by deferred mail, then by name."""
    return sorted(reports, key=lambda r: (-r["severity"], -r["queues"]["deferred"], r["name"]))
