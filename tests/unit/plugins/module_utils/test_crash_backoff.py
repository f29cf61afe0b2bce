"""Crash back-off of master-less units: master(8)'s throttle (service_throttle_time) as systemd units."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils._masterless_units import (
    CRASH_BURST,
    RELOAD_GRACE,
    Instance,
    UnitSet,
    build_units,
)
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_semantics import time_seconds

MASTER_CF = """\
smtp      inet  n       -       y       -       -       smtpd
cleanup   unix  n       -       y       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
showq     unix  n       -       y       -       -       showq
crash-me  unix  -       -       n       -       -       smtp
"""
POOLS = ("postfix-default-smtp-inet@.service", "postfix-default-cleanup-unix@.service",
         "postfix-default-qmgr-unix.service", "postfix-default-crash\\x2dme-unix@.service")


def build(**facts: str) -> UnitSet:
    return build_units(MASTER_CF, Instance(**facts), resolver=lambda host: ["127.0.0.1"], port_resolver=lambda name: 25)


def key(unit: str, name: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(name + "=")]


@pytest.mark.parametrize(("value", "seconds"), [
    ("60s", 60), ("60", 60), ("2m", 120), ("1h", 3600), ("1d", 86400), ("1w", 604800), (" 5s", 5), ("+7", 7),
    ("10sx", 10),  # conv_time.c reads one unit letter and ignores the rest
    ("", 60), ("s", 60), ("-5s", 60), ("5x", 60), ("0", 60), ("99999999999", 60), ("٣s", 60),  # master refuses these
])
def test_service_throttle_time_reads_as_conv_time(value: str, seconds: int) -> None:
    assert time_seconds(value, 60) == seconds


def test_no_start_or_trigger_limit_comes_back() -> None:
    """Pool units start often under load by design: only abnormal exits may count, never starts."""
    units = build()
    for name, unit in units.units.items():
        assert key(unit, "StartLimitBurst") == [], name
        if name.endswith(".socket"):
            assert key(unit, "TriggerLimitIntervalSec") == ["0"], name
        if name.endswith(".service") and "wakeup" not in name:
            assert key(unit, "StartLimitIntervalSec") == ["0"], name
        # systemd 247: ExecStopPost= on a Type=exec unit whose process dies at once loops PID 1.
        assert key(unit, "ExecStopPost") == [], name


@pytest.mark.parametrize("name", [*POOLS, "postfix-default-holder.service"])
def test_restarting_units_wait_out_the_throttle(name: str) -> None:
    unit = build(service_throttle_time="2m").units[name]
    gate = key(unit, "ExecStartPre")[0]
    assert gate.startswith('+/bin/sh -c "')  # root, outside the sandbox: /run/mailfleet-postfix is root's
    assert "systemctl show -p NRestarts --value -- '%n'" in gate
    assert "'postfix-default-crash@%N.service'" in gate and "sleep 120;" in gate
    assert key(unit, "TimeoutStartSec") == ["210s"]  # the wait is part of the start
    assert key(unit, "RestartSec") == ["1s"]


def test_per_connection_units_have_no_gate() -> None:
    unit = build().units["postfix-default-showq-unix@.service"]
    assert key(unit, "Restart") == [] and key(unit, "ExecStartPre") == []


def test_crash_unit_fails_to_be_seen() -> None:
    unit = build().units["postfix-default-crash@.service"]
    assert key(unit, "ExecStart") == ["/bin/false"]
    assert key(unit, "Type") == ["oneshot"]
    assert key(unit, "User") == ["postfix"]
    assert key(unit, "CollectMode") == []  # failed units stay listed (systemctl --failed)


def test_holder_start_clears_the_daemons_throttles() -> None:
    unit = build().units["postfix-default-holder.service"]
    clear = key(unit, "ExecStartPre")[1]
    assert "/run/mailfleet-postfix/default/throttle'/*.crashes" in clear
    assert "[ \\\"$$n\\\" = 'postfix-default-holder' ] && continue" in clear  # its own count stays


# --------------------------------------------------------------------------- the gate, run by /bin/sh


def _script(line: str, unit: str) -> str:
    """What systemd hands to /bin/sh -c for ExecStartPre=+/bin/sh -c "...": C-unescape, specifiers, $$."""
    body = line[len('+/bin/sh -c "'):-1]
    body = re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)
    body = re.sub(r"%([%nN])", lambda m: {"%": "%", "n": unit + ".service", "N": unit}[m.group(1)], body)
    return body.replace("$$", "$")


Start = Callable[[int], list[str]]


@pytest.fixture
def gate(tmp_path: Path) -> tuple[Start, Path, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    restarts = tmp_path / "nrestarts"
    restarts.write_text("0")
    (bin_dir / "systemctl").write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\ncase "$1" in show) cat {restarts};; esac\nexit 0\n')
    (bin_dir / "sleep").write_text(f'#!/bin/sh\necho "sleep $*" >> {calls}\n')
    for tool in ("systemctl", "sleep"):
        (bin_dir / tool).chmod(0o755)
    run_dir = tmp_path / "run"
    unit = "postfix-default-crash\\x2dme-unix@1"
    line = key(build(runtime_directory=str(run_dir), service_throttle_time="7s")
               .units["postfix-default-crash\\x2dme-unix@.service"], "ExecStartPre")[0]
    script = _script(line, unit)

    def start(nrestarts: int) -> list[str]:
        """A start after nrestarts automatic restarts."""
        restarts.write_text(str(nrestarts))
        calls.write_text("")
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
        done = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=10, check=False)
        assert done.returncode == 0, done.stderr
        return [c for c in calls.read_text().splitlines() if not c.startswith("show ")]

    return start, run_dir / "default" / "throttle", unit


def test_gate_throttles_after_a_burst_of_crash_restarts_only(gate: tuple[Start, Path, str]) -> None:
    start, throttle, unit = gate
    # Starts that are not restarts (socket activation, max_use successors) never count.
    for _unused in range(20):
        assert start(0) == []
    assert not throttle.exists()
    # Restarts after abnormal exits: the first CRASH_BURST pass, the next one throttles.
    for count in range(1, CRASH_BURST + 1):
        assert start(count) == [], count
    assert (throttle / f"{unit}.crashes").read_text().count("\n") == CRASH_BURST
    calls = start(CRASH_BURST + 1)
    assert calls == [f"start --no-block -q -- postfix-default-crash@{unit}.service", "sleep 7",
                     f"reset-failed -q -- postfix-default-crash@{unit}.service"]
    # After the wait the count starts afresh.
    assert not (throttle / f"{unit}.crashes").exists()
    assert start(CRASH_BURST + 2) == []


def test_restarts_right_after_a_reload_never_count(gate: tuple[Start, Path, str]) -> None:
    """qmgr (Restart=always) comes back after every postfix reload: the holder marks the reload."""
    start, throttle, unit = gate
    throttle.mkdir(parents=True)
    (throttle / ".reload").write_text(f"{int(time.time())}\n")
    for count in range(1, 3 * CRASH_BURST):
        assert start(count) == [], count
    assert not (throttle / f"{unit}.crashes").exists()
    (throttle / ".reload").write_text(f"{int(time.time()) - RELOAD_GRACE}\n")
    assert start(3 * CRASH_BURST) == []  # long after the reload: counted
    assert (throttle / f"{unit}.crashes").read_text().count("\n") == 1
    (throttle / ".reload").write_text(f"{int(time.time()) + 3600}\n")  # the clock stepped back since
    assert start(3 * CRASH_BURST + 1) == []
    assert (throttle / f"{unit}.crashes").read_text().count("\n") == 2


def test_gate_follows_a_reset_restart_counter(gate: tuple[Start, Path, str]) -> None:
    start, throttle, unit = gate
    for count in range(1, 4):
        start(count)
    start(0)  # systemctl start / reset-failed flushes NRestarts: nothing new to count
    assert (throttle / f"{unit}.restarts").read_text().strip() == "0"
    assert (throttle / f"{unit}.crashes").read_text().count("\n") == 3
    for count in range(1, 3):
        assert start(count) == []  # 5 within the interval: still no throttle
    assert start(3)[0].startswith("start --no-block")
