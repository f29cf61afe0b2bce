# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mode switch of one master-less instance as a plan: pure functions, no host access.

Private to the mailfleet.postfix collection; the API may change without notice.

``plan(observed, wanted)`` returns the ordered actions (``_host.Action``) that take the instance
from what ``_masterless_host.observe`` found to what the task wants; ``_masterless_host.operations`` holds
the functions that perform them and ``_host.execute`` runs the list (check mode reports it). A
step that needs the result of an earlier one (the state file's key covers the library written
before it, the verification follows a start) is one action whose function does both.

Never two supervisors on one queue: the running side is stopped completely before the other starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ._host import Action, FileSpec

DAEMON_RELOAD = Action("systemctl daemon-reload", "systemctl", ("daemon-reload",))
STOP_MASTER = Action("stop master(8)", "stop_master")
START_MASTER = Action("start master(8)", "start_master")
# Ops whose action stops one supervisor (a switch when the other then starts).
STOPS_A_SIDE = ("stop_master", "stop_masterless")


@dataclass(frozen=True)
class Wanted:
    """What the task asks for, and the names the plan needs."""

    mode: str  # systemd or master
    state: str  # started, stopped or present
    prefix: str  # postfix-NAME: the instance's units start with it
    package: str  # the installed library's directory
    conf_path: str  # the instance's .conf (enables it for the generator)
    state_path: str  # the stored unit set
    wrapper_path: str  # postfix-script, where the router goes
    files: tuple[FileSpec, ...] = ()  # generator, bridge, library, .conf (mode=systemd)
    unit_files: Mapping[str, str] = field(default_factory=dict)  # the generated set (empty for master)
    units: tuple[str, ...] = ()  # generated unit names

    @property
    def target(self) -> str:
        return f"{self.prefix}.target"

    @property
    def holder(self) -> str:
        return f"{self.prefix}-holder.service"


@dataclass(frozen=True)
class Observed:
    """What the host has, read once before anything changes."""

    unit_files: Mapping[str, str] = field(default_factory=dict)  # the set in effect (stored copy)
    files_differ: frozenset[str] = frozenset()  # paths of Wanted.files that are not as wanted
    state_differs: bool = False  # the stored set is not the one built now
    conf_present: bool = False
    state_present: bool = False
    master_running: bool = False  # master.pid names a live master(8)
    master_units_active: bool = False  # a unit that runs master(8) for the instance is active
    target_active: bool = False
    holder_active: bool = False
    slice_empty: bool = True  # no process of the instance left
    failed: tuple[str, ...] = ()  # the instance's own units in the failed state
    running: tuple[str, ...] = ()  # the instance's own units that are not inactive
    unhealthy: tuple[str, ...] = ()  # sockets that do not listen, failed units (described)
    divert_tool: bool = True  # dpkg-divert exists
    diverted: bool = False  # postfix-script is diverted
    wrapper_differs: bool = True  # the router at postfix-script is not the wanted one
    other_instances: tuple[str, ...] = ()  # .conf files of other master-less instances


def summarize(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, list[str]]:
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "modified": sorted(n for n in set(before) & set(after) if before[n] != after[n]),
    }


def unit_file(unit: str) -> str:
    """The file a unit is loaded from: a template's instance (name@N.service) from name@.service."""
    name, at, rest = unit.partition("@")
    return f"{name}@{rest[rest.rfind('.'):]}" if at else unit


def plan(observed: Observed, wanted: Wanted) -> list[Action]:
    """The ordered actions from observed to wanted."""
    if wanted.mode == "systemd":
        return _to_systemd(observed, wanted)
    return _to_master(observed, wanted)


def switched(actions: Sequence[Action], wanted: Wanted) -> bool:
    """Whether the plan stops one supervisor and starts the other."""
    return wanted.state == "started" and any(a.op in STOPS_A_SIDE for a in actions)


def files_changed(actions: Sequence[Action]) -> list[str]:
    """Installed files the plan writes or removes (the stored unit set is not one of them)."""
    return [a.args[0].path if a.op == "write" else a.args[0] for a in actions if a.op in ("write", "remove")]


def notes(observed: Observed, wanted: Wanted) -> list[str]:
    """Warnings for the task."""
    if wanted.mode == "systemd" and not observed.divert_tool:
        return [f"postfix start would start master(8) for a stopped {wanted.target}: this host has no "
                "dpkg-divert to route it (use systemctl start)"]
    return []


def _to_systemd(o: Observed, w: Wanted) -> list[Action]:
    changes = summarize(o.unit_files, w.unit_files)
    units_changed = any(changes.values())
    writes = [s for s in w.files if s.path in o.files_differ]
    steps = [Action(f"{'remove' if s.absent else 'write'} {s.path}", "write", (s,)) for s in writes]
    library = any(s.path.startswith(w.package + "/") for s in writes)
    if library:
        steps.append(Action(f"compile {w.package}", "compile"))
    if library or o.state_differs:  # its key covers the library: a new library, a new key
        steps.append(Action(f"write {w.state_path}", "write_state"))
    if writes or units_changed:
        steps.append(DAEMON_RELOAD)
    if o.divert_tool and (o.wrapper_differs or not o.diverted):
        steps.append(Action(f"divert {w.wrapper_path} (postfix start starts the target)", "divert"))
    if w.state == "present":
        return steps
    if o.master_running or o.master_units_active:
        steps.append(STOP_MASTER)
    if w.state == "stopped":
        if o.target_active:
            steps.append(Action(f"stop {w.target}", "stop_masterless"))
        return steps
    if not o.target_active or not o.holder_active:
        steps += _reset_failed(o, w) + [Action(f"start {w.target}", "start_masterless")]
    elif units_changed:
        steps += _apply_changes(o, w, changes)
    elif o.unhealthy:
        # Running, but a listener is missing or a unit failed: started again, like a failed service.
        steps += _reset_failed(o, w) + [Action(f"start {w.target} (a unit failed or a socket does not listen)",
                                               "systemctl_verified", ("start", w.target))]
    return steps


def _apply_changes(o: Observed, w: Wanted, changes: Mapping[str, list[str]]) -> list[Action]:
    # Units of removed entries keep running after daemon-reload (not-found): stopped by name.
    stale = [u for u in o.running if unit_file(u) in changes["removed"]]
    steps = [Action("stop " + " ".join(stale), "stop_stale", (tuple(stale),))] if stale else []
    steps += _reset_failed(o, w, stopping=bool(stale))
    if any(n.endswith(".socket") for names in changes.values() for n in names):
        # Listeners changed: master(8) rebinds on reload; units must be restarted to rebind.
        return steps + [Action(f"restart {w.target}", "systemctl_verified", ("restart", w.target))]
    return steps + [Action(f"start {w.target}", "systemctl", ("start", w.target)),
                    Action(f"reload {w.holder} (daemons retire gracefully)", "systemctl_verified",
                           ("reload", w.holder))]


def _to_master(o: Observed, w: Wanted) -> list[Action]:
    steps = []
    stopping = (o.conf_present or o.target_active) and (o.target_active or not o.slice_empty)
    if stopping:
        steps.append(Action(f"stop {w.target}", "stop_masterless"))
    if o.conf_present:
        steps.append(Action(f"remove {w.conf_path}", "remove", (w.conf_path,)))
        if o.state_present:
            steps.append(Action(f"remove {w.state_path}", "remove", (w.state_path,)))
        steps.append(DAEMON_RELOAD)
    if not o.other_instances and o.divert_tool and o.diverted:  # the last master-less instance
        steps.append(Action(f"restore {w.wrapper_path}", "undivert"))
    # Units that failed while master-less are not-found now: nothing else clears them.
    steps += _reset_failed(o, w, stopping=stopping)
    if w.state == "started" and not o.master_running:
        steps.append(START_MASTER)
    elif w.state == "stopped" and o.master_running:
        steps.append(STOP_MASTER)
    return steps


def _reset_failed(o: Observed, w: Wanted, *, stopping: bool = False) -> list[Action]:
    """Clear the failed state of the instance's own units (also of units no longer generated).

    The action resets the units failed when it runs: after a stop in the same plan, also those that
    failed while stopping."""
    if o.failed:
        return [Action("reset-failed " + " ".join(o.failed), "reset_failed")]
    if stopping:
        return [Action(f"reset-failed {w.prefix}-* (units that failed while stopping, if any)", "reset_failed")]
    return []
