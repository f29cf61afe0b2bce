"""Forking pools and companion starts, from a compromised daemon's side: what a process in a pool unit's
cgroup (uid postfix, possibly compromised) can make the root holder do with them.

The holder runs as in test_masterless_bridge.py (a real holder, a fake /proc, fake daemons); this very process plays
the compromised daemon, in the cgroup it writes for itself into the fake /proc.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

_spec = importlib.util.spec_from_file_location("_bridge_env", Path(__file__).with_name("test_masterless_bridge.py"))
assert _spec is not None and _spec.loader is not None
tb: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tb)

FORKING = ["--max-use", "100", "--forks", "8"]

# A daemon of the bridge that closed its status channel and lives on: its bridge stays, with no
# registration left in its unit (a compromised daemon can do that, or its siblings simply ended).
LINGER = r'''
import os, sys, time
os.close(5)
open(os.environ["FAKE_REPORT"] + ".%d.ready" % os.getpid(), "w").close()
time.sleep(60)
'''


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Any]:
    e = tb.Env(tmp_path)
    e.start_holder()
    yield e
    e.close()


def _options(env: Any, *extra: str) -> list[str]:
    return ["--holder", str(env.sock), "--flow", str(env.flow), "--maxproc", "0", *extra]


def test_re_registering_does_not_make_the_holder_start_companions_again(env: Any) -> None:
    """The first template worker after an idle period starts the companions (cleanup, ...); a process that
    registers again and again (each time it is the only worker: its own old registration is dropped first)
    must not make the root holder spawn a systemctl per request."""
    env.add_unit("t-cleanup-unix@.service", _options(env, "--max-use", "100"), daemon="cleanup")
    env.add_unit("t-s-inet@.service", _options(env, "--max-use", "100"), daemon="smtpd")
    pairs = [socket.socketpair() for _unused in range(20)]
    try:
        for mine, _peer in pairs:
            assert tb.send_request(env, b"unit=t-s-inet@1.service\n", [mine.fileno()],
                                   cgroup="/t.slice/t-s-inet@1.service") == "OK"
        calls = tb.wait_calls(env, 1)
        assert calls == ["start --no-block t-cleanup-unix@1.service"]
        assert env.status()["t-cleanup-unix"]["pending"] == ["t-cleanup-unix@1.service"]
    finally:
        for pair in pairs:
            for sock in pair:
                sock.close()


def test_only_the_bridge_registers_in_its_unit_while_it_lives(env: Any) -> None:
    """While a forking unit's bridge lives, no other process of the unit (a daemon it forked) registers
    there, even once the bridge's own registrations are gone: it would take the control channel and be
    granted daemons of its own (OK fork=N), which only the bridge may be."""
    env.fake.write_text(LINGER)
    listen = tb.unix_listener(env.tmp / "pool.sock")
    bridge, out = env.bridge([listen], unit="t-p-unix@1.service", maxproc="8", extra=FORKING)
    assert tb.wait_daemons(out, 1) == 1
    end = time.monotonic() + 5
    while env.status()["t-p-unix"]["workers"] and time.monotonic() < end:
        time.sleep(0.05)
    assert env.status()["t-p-unix"]["workers"] == []
    assert bridge.poll() is None  # it waits for its daemon
    clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _unused in range(3)]
    status, control = socket.socketpair(), socket.socketpair()
    try:
        for client in clients:
            client.connect(str(env.tmp / "pool.sock"))
        reply = tb.send_request(env, b"unit=t-p-unix@1.service\ncontrol=1\n", [status[0].fileno(), control[0].fileno()])
        assert reply.startswith("ERR") and "bridge" in reply, reply
        assert env.status()["t-p-unix"]["workers"] == []
        assert env.status()["t-p-unix"]["pending"] == []
    finally:
        for sock in (*clients, *status, *control):
            sock.close()
        for ready in tb.daemons_ready(out):
            os.kill(int(ready.name.split(".")[-2]), 9)


def test_a_grant_lapses_with_the_registration_it_was_made_to(env: Any) -> None:
    """A unit that registers anew (its bridge restarted, or the same process again) lapses what its old
    registration was granted: the grant and the pool's pending entries for it, which would otherwise keep
    the pool from growing (and from granting) until they time out."""
    env.add_unit("t-p-unix@1.service", _options(env, *FORKING))
    listen = tb.unix_listener(env.tmp / "pool.sock")
    clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _unused in range(3)]
    pairs = [socket.socketpair() for _unused in range(4)]
    try:
        for client in clients:
            client.connect(str(env.tmp / "pool.sock"))
        first = tb.send_request(env, b"unit=t-p-unix@1.service\ncontrol=1\n",
                                [pairs[0][0].fileno(), pairs[1][0].fileno(), listen.fileno()])
        assert first == "OK fork=2"
        assert len(env.status()["t-p-unix"]["pending"]) == 2
        # Registering anew without a control channel: the unit runs one daemon now, its old grant is void.
        assert tb.send_request(env, b"unit=t-p-unix@1.service\n", [pairs[2][0].fileno()]) == "OK"
        assert env.status()["t-p-unix"]["pending"] == []
        assert tb.send_request(env, b"unit=t-p-unix@1.service\ncontrol=1\n",
                               [pairs[2][0].fileno(), pairs[3][0].fileno()]) == "OK fork=2"
    finally:
        for sock in (*clients, *(s for pair in pairs for s in pair)):
            sock.close()
