"""instance_unit's plan: observed files and unit states -> the ordered actions (pure, no host)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _classic_jail_sync, _host_package
from ansible_collections.mailfleet.postfix.plugins.module_utils import _classic_unit as classic
from ansible_collections.mailfleet.postfix.plugins.module_utils._host import FileSpec, Observed

INST = classic.ClassicInstance(name="postfix-edge", config_directory="/etc/postfix-edge",
                               distribution_unit="postfix@postfix-edge.service")
UNIT, JAIL, PATH = "postfix-edge-master.service", "postfix-edge-jail.service", "postfix-edge-jail.path"
MAIN = FileSpec(f"/etc/systemd/system/{UNIT}", "[Service]\n")
OTHER = FileSpec(f"/etc/systemd/system/{PATH}", "[Path]\n")
GONE = FileSpec(f"/etc/systemd/system/{UNIT}", absent=True)


def seen(booted: bool = True, enabled: tuple[str, ...] = (), active: tuple[str, ...] = (),
         master: bool = False) -> classic.UnitsSeen:
    return classic.UnitsSeen(booted, enabled=frozenset(enabled), active=frozenset(active), master_running=master)


CASES: list[tuple[str, str, bool, list[FileSpec], classic.UnitsSeen, list[str]]] = [
    ("install without systemd: no daemon-reload, no start", "present", True, [MAIN], seen(booted=False),
     [f"write /etc/systemd/system/{UNIT}", f"systemctl enable {UNIT}", f"systemctl enable {PATH}"]),
    ("install with systemd", "present", True, [MAIN], seen(enabled=(UNIT, PATH)),
     [f"write /etc/systemd/system/{UNIT}", "systemctl daemon-reload"]),
    ("nothing to do", "started", True, [], seen(enabled=(UNIT, PATH), active=(UNIT, PATH)), []),
    ("a changed unit restarts the instance", "started", True, [MAIN], seen(enabled=(UNIT, PATH), active=(UNIT, PATH)),
     [f"write /etc/systemd/system/{UNIT}", "systemctl daemon-reload", f"systemctl restart {UNIT}"]),
    ("another file changed: no restart", "started", True, [OTHER], seen(enabled=(UNIT, PATH), active=(UNIT, PATH)),
     [f"write /etc/systemd/system/{PATH}", "systemctl daemon-reload"]),
    ("take over from the distribution's unit", "started", True, [], seen(enabled=(UNIT, PATH),
                                                                         active=("postfix@postfix-edge.service",),
                                                                         master=True),
     ["systemctl stop postfix@postfix-edge.service", "/usr/sbin/postfix -c /etc/postfix-edge stop",
      f"systemctl start {UNIT}", f"systemctl start {PATH}"]),
    ("a master outside any unit", "started", True, [], seen(enabled=(UNIT, PATH), master=True),
     ["/usr/sbin/postfix -c /etc/postfix-edge stop", f"systemctl start {UNIT}", f"systemctl start {PATH}"]),
    ("stopped stops a running instance", "stopped", True, [], seen(enabled=(UNIT, PATH), active=(UNIT, PATH)),
     [f"systemctl stop {UNIT}"]),
    ("stopped and not running", "stopped", True, [], seen(enabled=(UNIT, PATH)), []),
    ("disabled", "present", False, [], seen(enabled=(UNIT, PATH)),
     [f"systemctl disable {UNIT}", f"systemctl disable {PATH}"]),
    ("absent stops and disables before the files go", "absent", True, [GONE],
     seen(enabled=(UNIT, PATH), active=(UNIT, PATH, JAIL)),
     [f"systemctl stop {PATH}", f"systemctl stop {UNIT}", f"systemctl stop {JAIL}", f"systemctl disable {PATH}",
      f"systemctl disable {UNIT}", f"remove /etc/systemd/system/{UNIT}", "systemctl daemon-reload"]),
    ("absent without systemd only removes files", "absent", True, [GONE], seen(booted=False, enabled=(UNIT,)),
     [f"remove /etc/systemd/system/{UNIT}"]),
]


@pytest.mark.parametrize(("state", "enable", "changes", "observed", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_plan(state: str, enable: bool, changes: list[FileSpec], observed: classic.UnitsSeen,
              expected: list[str]) -> None:
    units = [] if state == "absent" else [UNIT, JAIL, PATH]
    actions = classic.plan(state, enable, INST, units, changes, observed)
    assert [a.what for a in actions] == expected
    # Every action names an operation the executor has, with what it needs.
    ops = classic.operations(lambda argv: (0, "", ""))
    assert all(a.op in ops for a in actions)
    assert [a.args for a in actions if a.op == "file"] == [(s,) for s in changes]


@pytest.mark.parametrize("state", ["started", "stopped"])
def test_running_states_need_systemd(state: str) -> None:
    with pytest.raises(classic.UnitPlanError, match="needs a running systemd"):
        classic.plan(state, True, INST, [UNIT], [MAIN], seen(booted=False))


def test_stop_outside_stops_only_a_running_master() -> None:
    calls: list[list[str]] = []

    def run(rc: int) -> Any:
        def runner(argv: Any) -> tuple[int, str, str]:
            calls.append(list(argv))
            return (rc if argv[-1] == "status" else 0), "", ""
        return runner

    classic.stop_outside(run(1), INST)  # the distribution's unit took it down already
    assert calls == [["/usr/sbin/postfix", "-c", "/etc/postfix-edge", "status"]]
    calls.clear()
    classic.stop_outside(run(0), INST)
    assert calls[-1] == ["/usr/sbin/postfix", "-c", "/etc/postfix-edge", "stop"]


def generated(jail: bool) -> classic.ClassicUnits:
    units = {UNIT: "[Service]\n", **({JAIL: "[Service]\n", PATH: "[Path]\n"} if jail else {})}
    return classic.ClassicUnits(instance=INST, units=units, masks=["postfix@postfix-edge.service"])


def test_file_specs() -> None:
    specs = {s.path: s for s in classic.file_specs(generated(True), "/u", absent=False)}
    assert specs["/u/postfix@postfix-edge.service"] == FileSpec.mask("/u/postfix@postfix-edge.service")
    lib = "/usr/libexec/mailfleet-postfix"
    # The whole package, as the master-less side writes it: one release's files on a host.
    assert {p for p in specs if p.startswith(f"{lib}/mailfleet_postfix/")} == {
        s.path for s in _host_package.package_files(lib)}
    assert specs[f"{lib}/mailfleet_postfix/_classic_jail_sync.py"].content == Path(_classic_jail_sync.__file__).read_text()
    assert specs[f"{lib}/mailfleet_postfix/__init__.py"].content == ""
    launcher = specs[f"{lib}/chroot-sync"]
    assert launcher.mode == 0o755 and "from mailfleet_postfix._classic_jail_sync import main" in (launcher.content or "")
    without = {s.path: s for s in classic.file_specs(generated(False), "/u", absent=False)}
    assert without[f"/u/{JAIL}"].absent and f"{lib}/chroot-sync" not in without
    gone = {s.path: s for s in classic.file_specs(generated(True), "/u", absent=True)}
    assert gone["/u/postfix@postfix-edge.service"].only_if_link_to == "/dev/null"  # only masks go
    assert all(s.absent for s in gone.values())


def test_refuse() -> None:
    mask = FileSpec.mask("/u/postfix@postfix-edge.service")
    classic.refuse([mask], {mask.path: Observed("absent")})
    classic.refuse([mask], {mask.path: Observed("link", link="/dev/null")})
    with pytest.raises(classic.UnitPlanError, match="exists and is not a mask"):
        classic.refuse([mask], {mask.path: Observed("file", content="[Service]\n")})
    with pytest.raises(classic.UnitPlanError, match="is a directory"):
        classic.refuse([GONE], {GONE.path: Observed("directory")})
