# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Faults under load: nothing the edges accepted may be lost, and the fleet heals without an operator.

Tests run in file order on the same fleet. edge1 and delivery1 are master-less, edge2 runs master(8).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Fleet


def test_delivery_outage_edges_queue_then_deliver_exactly_once(fleet: Fleet) -> None:
    # 25 msg/s: the load outlasts the stop of the delivery instance even on a slow machine.
    load = fleet.start_load(500, fleet.edges, concurrency=8, rate=25)
    load.wait_accepted(100)
    started = time.monotonic()
    fleet.stop_instance(fleet.delivery_name)
    try:
        stop_seconds = time.monotonic() - started
        held = fleet.mailbox(load.run)
        accepted_at_stop = load.accepted_so_far()
        result = load.finish()
        queued = {e: fleet.queued(e) for e in fleet.edges}
        during = sum(1 for s, _unused in result["status"].values() if s == "accepted") - accepted_at_stop
        print(f"faults: delivery instance stopped in {stop_seconds:.1f} s with {accepted_at_stop} accepted and"
              f" {len(held)} in the mailbox; accepted during the outage {during}; queued on the edges {queued}")
        assert during >= 20, "the load ended before the outage began: the test proves nothing"
        # The edges keep accepting and hold the mail while the delivery tier is away.
        assert fleet.mailbox(load.run) == held, "mail reached the mailbox while the delivery instance was stopped"
        assert sum(queued.values()) >= during, f"accepted during the outage, but not queued on the edges: {fleet.queue_state()}"
    finally:
        fleet.start_instance(fleet.delivery_name)
    summary = fleet.settle("delivery instance stopped", result, load.run)
    summary["queued_on_edges_during_outage"] = queued
    assert summary["accepted"] == 500, f"the edges refused mail during the outage: {summary}"
    assert not summary["lost"], f"lost: {summary['lost'][:20]}; queues: {summary['queues']}"
    assert not summary["duplicates"], f"delivered twice: {summary['duplicates'][:20]}"
    assert summary["delivered_exactly_once"] == 500
    assert all(fleet.queued(e) == 0 for e in fleet.edges), f"edge queues did not drain: {fleet.queue_state()}"


def test_kill_9_of_qmgr_cleanup_smtpd_in_masterless_mode_loses_nothing(fleet: Fleet) -> None:
    edge = fleet.edges[0]
    hosts = [edge, fleet.delivery_name]
    for name in hosts:
        assert fleet.masterless(name), f"{name} is expected to run master-less"
    qmgr_before = {n: fleet.host(n).run("pgrep -x qmgr").stdout.split() for n in hosts}
    load = fleet.start_load(300, [edge], concurrency=6, rate=30)
    killed: dict[str, list[str]] = {}
    for after, daemon in ((30, "qmgr"), (90, "cleanup"), (150, "smtpd")):
        load.wait_accepted(after)
        for name in hosts:
            pids = fleet.host(name).run(f"pgrep -x {daemon}").stdout.split()
            fleet.host(name).run(f"pkill -9 -x {daemon}")
            killed.setdefault(name, []).append(f"{daemon}:{len(pids)}")
    result = load.finish()
    summary = fleet.settle("kill -9 qmgr, cleanup, smtpd", result, load.run)
    summary["killed"] = killed
    print(f"faults: processes killed (daemon:count): {killed}")
    assert not summary["lost"], f"lost: {summary['lost'][:20]}; queues: {summary['queues']}"
    # Came back by themselves: a new qmgr, no failed unit, no master(8).
    for name in hosts:
        node = fleet.host(name)
        fleet.wait_for(lambda node=node: node.run("pgrep -x qmgr").rc == 0, f"qmgr to return on {name}", 60)
        assert node.run("pgrep -x qmgr").stdout.split() != qmgr_before[name]
        assert fleet.failed_units(name) == "", fleet.failed_units(name)
        assert node.run("pgrep -x master").rc != 0, f"a master(8) runs on {name}"
    assert summary["delivered_exactly_once"] + len(summary["duplicates"]) == summary["accepted"], summary


def test_power_cycle_keeps_the_queue_and_every_unit_comes_back(fleet: Fleet) -> None:
    edge = fleet.edges[0]
    fleet.stop_instance(fleet.delivery_name)
    load = fleet.start_load(40, [edge], concurrency=4, rate=40)
    result = load.finish()
    held = fleet.queued(edge)
    assert held >= 40, f"only {held} messages queued on {edge}"

    fleet.power_cycle(edge)
    node = fleet.host(edge)
    assert node.run("systemctl is-active postfix-default.target").stdout.strip() == "active"
    assert node.run("systemctl is-active postfix-default-smtp-inet.socket").stdout.strip() == "active"
    assert fleet.failed_units(edge) == "", fleet.failed_units(edge)
    assert node.run("pgrep -x master").rc != 0, f"a master(8) runs on {edge} after the reboot"
    assert fleet.queued(edge) >= held, "the queue lost messages in the reboot"

    # The delivery host was stopped by hand; after a reboot it must come up by itself.
    fleet.power_cycle(fleet.delivery_name)
    delivery = fleet.delivery
    fleet.wait_for(lambda: delivery.run("systemctl is-active postfix-default.target").stdout.strip() == "active",
                   "the delivery instance to start at boot", 60)
    assert fleet.failed_units(fleet.delivery_name) == "", fleet.failed_units(fleet.delivery_name)

    summary = fleet.settle("reboot edge1 and delivery1", result, load.run)
    summary["queued_before_reboot"] = held
    assert not summary["lost"], f"lost: {summary['lost'][:20]}; queues: {summary['queues']}"
    assert not summary["duplicates"], f"delivered twice: {summary['duplicates'][:20]}"
    fleet.wait_for(lambda: fleet.queued(edge) == 0, f"the queue of {edge} to drain", 60)
