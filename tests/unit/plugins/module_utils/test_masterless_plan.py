"""The mode switch of a master-less instance as a pure function: observed state + wanted state -> actions."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _host
from ansible_collections.mailfleet.postfix.plugins.module_utils._masterless_plan import (
    Observed,
    Wanted,
    files_changed,
    notes,
    plan,
    switched,
    unit_file,
)

P = "postfix-default"
TARGET, HOLDER = f"{P}.target", f"{P}-holder.service"
LIB = "/usr/libexec/mailfleet-postfix/mailfleet_postfix"
CONF = "/etc/mailfleet-postfix/instances/default.conf"
STATE = "/var/lib/mailfleet-postfix/default/units.set"
SCRIPT = "/usr/lib/postfix/sbin/postfix-script"
GENERATOR = "/etc/systemd/system-generators/mailfleet-postfix-generator"
FILES = (_host.FileSpec(f"{LIB}/_masterless_units.py", "# units\n"), _host.FileSpec(GENERATOR, "#!/usr/bin/python3 -IS\n", mode=0o755),
         _host.FileSpec(CONF, "config_directory = /etc/postfix\n"))
UNITS = {f"{P}-smtp-inet.socket": "[Socket]\n", f"{P}-smtp-inet@.service": "[Service]\n",
         f"{P}-relay-unix@.service": "[Service]\nExecStart=relay\n", f"{P}-anvil-unix.socket": "[Socket]\n",
         f"{P}-anvil-unix.service": "[Service]\n", f"multi-user.target.wants/{TARGET}": "@link:../x"}


def wanted(mode: str = "systemd", state: str = "started", **kw: Any) -> Wanted:
    values: dict[str, Any] = {"files": FILES, "unit_files": UNITS,
                              "units": tuple(sorted(u for u in UNITS if "/" not in u))} if mode == "systemd" else {}
    values.update(kw)
    return Wanted(mode=mode, state=state, prefix=P, package=LIB, conf_path=CONF, state_path=STATE, wrapper_path=SCRIPT,
                  **values)


# The host as a finished switch left it: installed, diverted, the target and its holder running.
RUNNING = Observed(unit_files=UNITS, conf_present=True, state_present=True, target_active=True, holder_active=True,
                   slice_empty=False, diverted=True, wrapper_differs=False)
# A host where master(8) runs and nothing master-less was ever installed.
MASTER = Observed(files_differ=frozenset(f.path for f in FILES), state_differs=True, master_running=True,
                  master_units_active=True)
FRESH_INSTALL = [f"write {LIB}/_masterless_units.py", f"write {GENERATOR}", f"write {CONF}", f"compile {LIB}", f"write {STATE}",
                 "systemctl daemon-reload", f"divert {SCRIPT} (postfix start starts the target)"]
WHILE_STOPPING = f"reset-failed {P}-* (units that failed while stopping, if any)"


def edited(**changes: str) -> dict[str, str]:
    """The unit set after a master.cf edit: "-" removes a unit."""
    units = {**UNITS, **changes}
    return {k: v for k, v in units.items() if v != "-"}


CASES = {
    "master running, want systemd": (
        MASTER, wanted(), FRESH_INSTALL + ["stop master(8)", f"start {TARGET}"], True),
    "master-less running, want master": (
        RUNNING, wanted("master"),
        [f"stop {TARGET}", f"remove {CONF}", f"remove {STATE}", "systemctl daemon-reload", f"restore {SCRIPT}",
         WHILE_STOPPING, "start master(8)"], True),
    "master-less running, want master, failed units": (
        replace(RUNNING, failed=(f"{P}-pickup-fifo.socket",)), wanted("master"),
        [f"stop {TARGET}", f"remove {CONF}", f"remove {STATE}", "systemctl daemon-reload", f"restore {SCRIPT}",
         f"reset-failed {P}-pickup-fifo.socket", "start master(8)"], True),
    "master-less running, want master, another instance master-less": (
        replace(RUNNING, other_instances=("edge.conf",)), wanted("master"),
        [f"stop {TARGET}", f"remove {CONF}", f"remove {STATE}", "systemctl daemon-reload", WHILE_STOPPING,
         "start master(8)"], True),
    "master-less processes left, target stopped, want master": (
        replace(RUNNING, target_active=False, holder_active=False), wanted("master"),
        [f"stop {TARGET}", f"remove {CONF}", f"remove {STATE}", "systemctl daemon-reload", f"restore {SCRIPT}",
         WHILE_STOPPING, "start master(8)"], True),
    "nothing running, want systemd stopped": (
        replace(RUNNING, target_active=False, holder_active=False, slice_empty=True), wanted(state="stopped"), [],
        False),
    "master-less running, want systemd stopped": (RUNNING, wanted(state="stopped"), [f"stop {TARGET}"], False),
    "master running, want systemd stopped": (
        replace(MASTER, unit_files=UNITS, files_differ=frozenset(), state_differs=False, diverted=True,
                wrapper_differs=False),
        wanted(state="stopped"), ["stop master(8)"], False),
    "nothing running, want master stopped": (Observed(), wanted("master", "stopped"), [], False),
    "master running, want master stopped": (Observed(master_running=True), wanted("master", "stopped"),
                                            ["stop master(8)"], False),
    "master running, want master started": (Observed(master_running=True), wanted("master"), [], False),
    "master-less running, want systemd started": (RUNNING, wanted(), [], False),
    "stopped, want systemd started": (
        replace(RUNNING, target_active=False, holder_active=False), wanted(),
        [f"start {TARGET}"], False),
    "holder down, failed units": (
        replace(RUNNING, holder_active=False, failed=(f"{P}-smtp-inet.socket",)), wanted(),
        [f"reset-failed {P}-smtp-inet.socket", f"start {TARGET}"], False),
    "service changed: graceful reload": (
        replace(RUNNING, unit_files=edited(**{f"{P}-relay-unix@.service": "[Service]\nExecStart=old\n"}),
                state_differs=True),
        wanted(), [f"write {STATE}", "systemctl daemon-reload", f"start {TARGET}",
                   f"reload {HOLDER} (daemons retire gracefully)"], False),
    "socket added: restart": (
        replace(RUNNING, unit_files=edited(**{f"{P}-smtp-inet.socket": "-"}), state_differs=True),
        wanted(), [f"write {STATE}", "systemctl daemon-reload", f"restart {TARGET}"], False),
    "entry removed: stale units stopped first": (
        replace(RUNNING, state_differs=True,
                running=(f"{P}-anvil-unix.socket", f"{P}-anvil-unix@1.service", f"{P}-smtp-inet.socket")),
        wanted(unit_files=edited(**{f"{P}-anvil-unix.socket": "-", f"{P}-anvil-unix.service": "-"})),
        [f"write {STATE}", "systemctl daemon-reload", f"stop {P}-anvil-unix.socket", WHILE_STOPPING,
         f"restart {TARGET}"], False),
    "unhealthy": (
        replace(RUNNING, unhealthy=(f"{P}-smtp-inet.socket (ActiveState=failed)",), failed=(f"{P}-smtp-inet.socket",)),
        wanted(), [f"reset-failed {P}-smtp-inet.socket", f"start {TARGET} (a unit failed or a socket does not listen)"],
        False),
    "library changed: compiled, state rewritten": (
        replace(RUNNING, files_differ=frozenset({f"{LIB}/_masterless_units.py"})), wanted(),
        [f"write {LIB}/_masterless_units.py", f"compile {LIB}", f"write {STATE}", "systemctl daemon-reload"], False),
    "launcher changed: no compile": (
        replace(RUNNING, files_differ=frozenset({GENERATOR})), wanted(),
        [f"write {GENERATOR}", "systemctl daemon-reload"], False),
    "present, master running": (MASTER, wanted(state="present"), FRESH_INSTALL, False),
    "present, want master, master-less running": (
        RUNNING, wanted("master", "present"),
        [f"stop {TARGET}", f"remove {CONF}", f"remove {STATE}", "systemctl daemon-reload", f"restore {SCRIPT}",
         WHILE_STOPPING], False),
    "no dpkg-divert": (replace(MASTER, divert_tool=False), wanted(),
                       FRESH_INSTALL[:-1] + ["stop master(8)", f"start {TARGET}"], True),
    "wrapper outdated": (replace(RUNNING, wrapper_differs=True), wanted(),
                         [f"divert {SCRIPT} (postfix start starts the target)"], False),
}


@pytest.mark.parametrize(("observed", "want", "expected", "is_switch"), CASES.values(), ids=CASES.keys())
def test_plan(observed: Observed, want: Wanted, expected: list[str], is_switch: bool) -> None:
    actions = plan(observed, want)
    assert [a.what for a in actions] == expected
    assert switched(actions, want) is is_switch


def test_never_two_supervisors_one_queue() -> None:
    """The running side is stopped before the other starts, in both directions."""
    ops = [a.op for a in plan(MASTER, wanted())]
    assert ops.index("stop_master") < ops.index("start_masterless")
    ops = [a.op for a in plan(RUNNING, wanted("master"))]
    assert ops.index("stop_masterless") < ops.index("start_master")


def test_verified_steps_and_files_changed() -> None:
    actions = plan(MASTER, wanted())
    assert files_changed(actions) == [f.path for f in FILES]  # the stored set is not an installed file
    assert files_changed(plan(RUNNING, wanted("master"))) == [CONF, STATE]
    # The last step of each start verifies the instance (its function checks the sockets and failed units).
    assert plan(MASTER, wanted())[-1].op == "start_masterless"
    socket_added = replace(RUNNING, unit_files=edited(**{f"{P}-smtp-inet.socket": "-"}))
    assert plan(socket_added, wanted())[-1].op == "systemctl_verified"


def test_stale_units_are_stopped_by_name() -> None:
    # A template's instances (one per connection) run from the template's file.
    removed = wanted(unit_files=edited(**{f"{P}-smtp-inet.socket": "-", f"{P}-smtp-inet@.service": "-"}))
    observed = replace(RUNNING, running=(f"{P}-anvil-unix.socket", f"{P}-smtp-inet@2.service"))
    stop = [a for a in plan(observed, removed) if a.op == "stop_stale"]
    assert stop == [_host.Action(f"stop {P}-smtp-inet@2.service", "stop_stale", ((f"{P}-smtp-inet@2.service",),))]
    assert unit_file(f"{P}-smtp-inet@2.service") == f"{P}-smtp-inet@.service"
    assert unit_file(f"{P}-showq-unix@2-1234-0.service") == f"{P}-showq-unix@.service"
    assert unit_file(TARGET) == TARGET


def test_notes_without_dpkg_divert() -> None:
    assert notes(replace(MASTER, divert_tool=False), wanted()) == [
        f"postfix start would start master(8) for a stopped {TARGET}: this host has no dpkg-divert to route it "
        "(use systemctl start)"]
    assert notes(replace(MASTER, divert_tool=False), wanted("master")) == []
    assert notes(MASTER, wanted()) == []


def test_check_mode_reports_exactly_what_a_real_run_executes() -> None:
    actions = plan(MASTER, wanted())
    called: list[tuple[str, tuple[Any, ...]]] = []
    ops = {a.op: (lambda *args, op=a.op: called.append((op, args))) for a in actions}
    checked = _host.execute(actions, ops, check_mode=True)
    assert called == []
    done = _host.execute(actions, ops, check_mode=False)
    assert checked == done == [a.what for a in actions]
    assert called == [(a.op, a.args) for a in actions]
