# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host side of the master-less mode: install generator and bridge, switch an instance between modes.

Private to the mailfleet.postfix collection; the API may change without notice.

The generator and the bridge run on hosts without the collection, so they are
installed from the module's own payload: the module_utils sources that the
module itself imported (never a second copy of the logic).

Switching modes never runs two supervisors on one queue: the running side is
stopped completely (no master, no daemon of the instance left) before the
other starts, and the new side is verified; the queue stays on disk.

A switch is observe -> plan -> execute: ``setup`` builds the wanted state (the unit set, the
installed files), ``observe`` reads what the host has once, ``_masterless_plan.plan`` turns both
into the ordered actions (a pure function), and ``_host.execute`` runs them with the functions of
``operations`` (check mode reports the same list). Commands, systemctl and file writes go through
``_host``; this module keeps what is specific to a master-less instance.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from dataclasses import replace as dataclasses_replace
from typing import Any, Callable, Mapping, Optional, Sequence

from . import _host, _host_package, _masterless_bridge, _masterless_generator, _masterless_units
from ._host import FileSpec, Runner
from ._masterless_plan import Observed, Wanted

GENERATOR_NAME = "mailfleet-postfix-generator"
LIBEXEC_DIR = "/usr/libexec/mailfleet-postfix"
PYTHON = "/usr/bin/python3"
# main.cf values the module needs before it maps anything: the instance's name and directories.
PROBE_PARAMS = ("multi_instance_name", "config_directory", "queue_directory", "command_directory", "daemon_directory")


class MasterlessError(Exception):
    """Something the module reports with fail_json; ``line`` names the master.cf line when known."""

    def __init__(self, message: str, *, line: Optional[int] = None) -> None:
        self.line = line
        super().__init__(message)


def installation(*, libexec: str, generator_dir: str, python: str) -> list[FileSpec]:
    """The whole library package (``_host_package``), the bridge's launcher and the generator."""
    files = _host_package.package_files(libexec)
    files.append(FileSpec(os.path.join(libexec, "bridge"), _masterless_bridge.LAUNCHER.format(python=python, libexec=libexec)))
    files.append(FileSpec(os.path.join(generator_dir, GENERATOR_NAME),
                          _masterless_generator.LAUNCHER.format(python=python, libexec=libexec), mode=0o755))
    return files


def conf_text(config_dir: str, extra: Mapping[str, str]) -> str:
    lines = ["# Managed by mailfleet.postfix (systemd_units): this instance runs without master(8).",
             f"config_directory = {config_dir}"]
    lines += [f"{key} = {value}" for key, value in sorted(extra.items())]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- postfix start

# postfix(1) runs $daemon_directory/postfix-script for every single-instance command (postfix.c;
# multi_instance_wrapper only sees commands without -c). Its `start` would start master(8), so while
# any instance runs master-less, dpkg-divert moves Postfix's script aside and this one routes
# `start` for those instances to their target; every other command is Postfix's own script.
SCRIPT_NAME = "postfix-script"
DIVERTED_SUFFIX = ".distrib"
SCRIPT_WRAPPER = """#!/bin/sh
# Installed by mailfleet.postfix (systemd_units) with dpkg-divert; Postfix's own script is
# {real}. For an instance that runs without master(8), "postfix start"
# starts its systemd target instead of a master. Everything else is Postfix's own script.
case "$1" in
start|start-fg)
    for conf in {conf_dir}/*.conf; do
        [ -f "$conf" ] || continue
        grep -qx "config_directory = ${{MAIL_CONFIG:-/etc/postfix}}" "$conf" || continue
        name=$(basename "$conf" .conf)
        if [ "$1" = start-fg ]; then
            echo "postfix/postfix-script: fatal: this instance runs without master(8): use systemctl start postfix-$name.target" >&2
            exit 1
        fi
        if systemctl is-active --quiet "postfix-$name.target"; then
            echo "postfix/postfix-script: fatal: the Postfix mail system is already running" >&2
            exit 1
        fi
        echo "postfix/postfix-script: starting the Postfix mail system without master(8): postfix-$name.target" >&2
        exec systemctl start "postfix-$name.target"
    done
    ;;
esac
exec {real} "$@"
"""


def script_wrapper(daemon_directory: str, conf_dir: str) -> FileSpec:
    path = os.path.join(daemon_directory, SCRIPT_NAME)
    return FileSpec(path, SCRIPT_WRAPPER.format(real=path + DIVERTED_SUFFIX, conf_dir=conf_dir), mode=0o755)


def diverted(run: Runner, path: str) -> bool:
    code, out, _unused = run(["dpkg-divert", "--list", path])
    return code == 0 and path + DIVERTED_SUFFIX in out


def divert_script(run: Runner, wrapper: FileSpec) -> None:
    """Move Postfix's script aside (package upgrades then update it there) and install the wrapper."""
    if not diverted(run, wrapper.path):
        code, out, err = run(["dpkg-divert", "--local", "--rename", "--divert", wrapper.path + DIVERTED_SUFFIX,
                              "--add", wrapper.path])
        if code != 0:
            raise MasterlessError(f"dpkg-divert {wrapper.path} failed: {(err or out).strip()}")
    _host.Writer().ensure(wrapper)


def undivert_script(run: Runner, path: str) -> None:
    """Postfix's own script back in place."""
    if os.path.exists(path + DIVERTED_SUFFIX) and os.path.exists(path):
        os.unlink(path)
    code, out, err = run(["dpkg-divert", "--local", "--rename", "--remove", path])
    if code != 0:
        raise MasterlessError(f"dpkg-divert --remove {path} failed: {(err or out).strip()}")


# --------------------------------------------------------------------------- what runs now


def master_pid(queue_directory: str) -> Optional[int]:
    """The pid of a running master(8) of this instance, if any.

    pid/master.pid stays after master stops, so the pid it names may be anyone's by now: it counts
    only as a root process called master whose working directory is this queue (master changes
    into it). Without the right to read that directory (a sandbox without ptrace access), the
    root process called master is taken as this instance's."""
    try:
        with open(os.path.join(queue_directory, "pid", "master.pid"), encoding="ascii") as handle:
            pid = int(handle.read(64).split()[0])
        with open(f"/proc/{pid}/comm", encoding="ascii") as handle:
            if handle.read().strip() != "master":
                return None
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            uids = next((line.split()[1:] for line in handle if line.startswith("Uid:")), [])
        if uids[:1] != ["0"]:
            return None
    except (OSError, ValueError, IndexError):
        return None
    try:
        # stat, not readlink: the directory itself, also for a master in a mount namespace of its own
        cwd = os.stat(f"/proc/{pid}/cwd")
    except OSError:
        return pid
    try:
        queue = os.stat(queue_directory)
    except OSError:
        return None
    return pid if (cwd.st_dev, cwd.st_ino) == (queue.st_dev, queue.st_ino) else None


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(step)


def slice_empty(run: Runner, slice_unit: str) -> bool:
    """No process of the instance is left (the slice holds every master-less unit)."""
    code, out, _unused = run(["systemctl", "show", "-p", "ControlGroup", "--value", "--", slice_unit])
    group = out.strip() if code == 0 else ""
    if not group:
        return True
    for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"):
        path = root + group
        if os.path.isdir(path):
            for dirpath, _subdirs, names in os.walk(path):
                if "cgroup.procs" in names:
                    with open(os.path.join(dirpath, "cgroup.procs"), encoding="ascii") as handle:
                        if handle.read().strip():
                            return False
            return True
    return True


# --------------------------------------------------------------------------- switching


def stop_master(run: Runner, *, queue_directory: str, config_dir: str, units: Sequence[str], postfix: str,
                timeout: float) -> bool:
    """Stop master(8) of this instance completely; True when one was running."""
    pid = master_pid(queue_directory)
    running_units = [u for u in units if _host.active(run, u)]
    if pid is None and not running_units:
        return False
    for unit in running_units:
        _host.systemctl(run, "stop", unit)
    if master_pid(queue_directory) is not None:
        run([postfix, "-c", config_dir, "stop"])
    if not wait_until(lambda: master_pid(queue_directory) is None, timeout):
        raise MasterlessError(f"master(8) of {config_dir} (pid {pid}) did not stop within {timeout:.0f}s; "
                              "nothing was started")
    return True


def start_master(run: Runner, *, queue_directory: str, config_dir: str, units: Sequence[str], postfix: str,
                 timeout: float) -> str:
    """Start master(8) the way this host does it; returns how."""
    for unit in units:
        if _host.unit_state(run, unit).get("LoadState") == "loaded":
            _host.systemctl(run, "start", unit)
            how = unit
            break
    else:
        code, out, err = run([postfix, "-c", config_dir, "start"])
        if code != 0:
            raise MasterlessError(f"postfix -c {config_dir} start failed: {(err or out).strip()}")
        how = f"postfix -c {config_dir} start"
    if not wait_until(lambda: master_pid(queue_directory) is not None, timeout):
        raise MasterlessError(f"master(8) did not come up within {timeout:.0f}s ({how})")
    return how


def stop_masterless(run: Runner, *, target: str, slice_unit: str, timeout: float) -> bool:
    if not _host.active(run, target) and slice_empty(run, slice_unit):
        return False
    _host.systemctl(run, "stop", target)
    if not wait_until(lambda: slice_empty(run, slice_unit), timeout):
        raise MasterlessError(f"processes of {slice_unit} were still running {timeout:.0f}s after stopping {target}")
    return True


def start_masterless(run: Runner, *, target: str, holder: str, queue_directory: str, timeout: float) -> None:
    _host.systemctl(run, "start", target)
    ok = wait_until(lambda: _host.active(run, holder + ".service") and master_pid(queue_directory) is None, timeout)
    if not ok:
        raise MasterlessError(f"{target} started, but {holder}.service is not running (see journalctl -u '{holder}*')")


# The type slugs of unit names (_masterless_units.TYPE_SLUG): <prefix>-<service>-<slug>[-wakeup][@N].<suffix>.
# One predicate for the module and the holder (which runs alone on the host): _masterless_bridge.own_unit.
UNIT_SLUGS = _masterless_bridge.UNIT_SLUGS
own_unit = _masterless_bridge.own_unit


def own_rows(run: Runner, prefix: str, *options: str) -> list[list[str]]:
    """systemctl list-units rows (unit, load, active, sub) of the instance's own units."""
    return [row for row in _host.list_units(run, "postfix-*", *options) if own_unit(prefix, row[0])]


def stale_units(run: Runner, prefix: str) -> list[str]:
    """Units of the instance that are loaded but no longer generated (master.cf entry removed)."""
    return [row[0] for row in own_rows(run, prefix) if row[1] == "not-found" and row[2] != "inactive"]


def failed_units(run: Runner, prefix: str) -> list[str]:
    """The instance's units in the failed state, generated now or not any more (not-found)."""
    return [row[0] for row in own_rows(run, prefix, "--state=failed") if row[2] == "failed"]


def reset_failed(run: Runner, units: Sequence[str]) -> None:
    """Forget the failed state of exactly these units (systemd drops them once they are not-found)."""
    if units:
        _host.systemctl(run, "reset-failed", "--", *units)


def _describe(unit: str, state: Mapping[str, str]) -> str:
    keys = ("LoadState", "ActiveState", "SubState", "Result")
    return f"{unit} (" + ", ".join(f"{k}={state.get(k, '?')}" for k in keys) + ")"


def listening(state: Mapping[str, str]) -> bool:
    """A socket unit that has its listener: waiting (listening) or handed to its service (running)."""
    return state.get("ActiveState") == "active" and state.get("SubState") in ("listening", "running")


def unhealthy(run: Runner, units: Sequence[str], prefix: str) -> list[str]:
    """Generated socket units that do not listen and failed units of the instance, described."""
    sockets = sorted(u for u in units if u.endswith(".socket"))
    states = _host.unit_states(run, sockets)
    problems = [_describe(s, states.get(s, {})) for s in sockets if not listening(states.get(s, {}))]
    failed = [u for u in failed_units(run, prefix) if u not in sockets]
    states = _host.unit_states(run, failed)
    return problems + [_describe(u, states.get(u, {})) for u in failed]


def verify_running(run: Runner, units: Sequence[str], prefix: str, timeout: float) -> None:
    """Every generated socket listens and no unit of the instance failed, or raise naming them."""
    sockets = [u for u in units if u.endswith(".socket")]

    def settled() -> bool:
        states = _host.unit_states(run, sockets)
        return all(states.get(s, {}).get("ActiveState") not in ("activating", "deactivating", "reloading")
                   for s in sockets)

    wait_until(settled, timeout)
    problems = unhealthy(run, units, prefix)
    if problems:
        raise MasterlessError("the instance does not run as generated: " + "; ".join(problems)
                              + f" (see systemctl status and journalctl -u '{prefix}-*')")


def diff_text(files: Mapping[str, str]) -> str:
    return "".join(f"### {name}\n{content}" + ("" if content.endswith("\n") else "\n")
                   for name, content in sorted(files.items()))


def unit_diff(before: Mapping[str, str], after: Mapping[str, str], prefix: str) -> dict[str, str]:
    """The diff Ansible shows: the unit set in effect against the generated one."""
    return {"before": diff_text(before), "after": diff_text(after), "before_header": f"{prefix}-* (loaded)",
            "after_header": f"{prefix}-* (generated)"}


def current_units(conf_path: str, state_path: str) -> dict[str, str]:
    """The unit set in effect: the module's stored copy while the instance is master-less."""
    if not os.path.exists(conf_path):
        return {}
    try:
        return _masterless_generator.split_record(_masterless_generator.load_set(state_path))[0]
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------- observe, execute


def instance_conf(params: Mapping[str, Any]) -> dict[str, str]:
    """The instance's .conf values (what the generator maps with) from the module's options."""
    conf = {"config_directory": params["config_dir"].rstrip("/") or "/"}
    if params["chroot"] != "sandbox":
        conf["chroot"] = params["chroot"]
    if params["libexec_dir"] != LIBEXEC_DIR:
        conf["libexec_directory"] = params["libexec_dir"]
    if params["python"] != PYTHON:
        conf["python"] = params["python"]
    if params["max_use_factor"] != _masterless_units.DEFAULT_MAX_USE_FACTOR:
        conf["max_use_factor"] = str(params["max_use_factor"])
    return conf


@dataclass(frozen=True)
class Setup:
    """The wanted state, and what the actions need beyond the plan (the instance, the unit set)."""

    wanted: Wanted
    instance: _masterless_units.Instance
    config_dir: str
    python: str
    timeout: float
    master_units: tuple[str, ...]
    unitset: Any = None  # _masterless_units.UnitSet (mode=systemd)
    inputs: Optional[_masterless_generator.Inputs] = None
    services: list[dict[str, Any]] = field(default_factory=list)
    warnings: tuple[str, ...] = ()

    def state_spec(self) -> FileSpec:
        """The stored unit set. Built when written, after the library: its key covers the library's
        files as the generator sees them."""
        record = _masterless_generator.saved_record(self.unitset, self.inputs, self.wanted.package) if self.inputs else {}
        return FileSpec(self.wanted.state_path, _masterless_generator.set_text(record))

    def wrapper(self) -> FileSpec:
        return script_wrapper(self.instance.daemon_directory, _masterless_generator.CONF_DIR)


def setup(instance: _masterless_units.Instance, params: Mapping[str, Any]) -> Setup:
    """The wanted state of the instance; with mode=systemd its unit set, mapped from master.cf now.

    Raises MasterCfError or GeneratorError when master.cf cannot be mapped."""
    conf = instance_conf(params)
    name, config_dir = instance.short_name, conf["config_directory"]
    wanted = Wanted(mode=params["mode"], state=params["state"], prefix=instance.prefix,
                    package=_host_package.package_dir(params["libexec_dir"]),
                    conf_path=os.path.join(_masterless_generator.CONF_DIR, f"{name}.conf"),
                    state_path=os.path.join(_masterless_generator.STATE_DIR, name, "units.set"),
                    wrapper_path=os.path.join(instance.daemon_directory, SCRIPT_NAME))
    masters = (f"{instance.prefix}-master.service",
               *_masterless_generator.master_units(instance.name or "-", instance.config_directory))
    done = Setup(wanted, instance, config_dir, params["python"], float(params["timeout"]), masters)
    if wanted.mode != "systemd":
        return done
    inputs = _masterless_generator.Inputs(name, conf)
    unitset = _masterless_generator.build(name, conf, inputs=inputs)
    files = installation(libexec=params["libexec_dir"], generator_dir=params["generator_dir"], python=params["python"])
    files.append(FileSpec(wanted.conf_path, conf_text(config_dir, {k: v for k, v in conf.items()
                                                                   if k != "config_directory"})))
    wanted = dataclasses_replace(wanted, files=tuple(files), unit_files=_masterless_generator.files_of(unitset),
                                 units=tuple(sorted(unitset.units)))
    return dataclasses_replace(done, wanted=wanted, unitset=unitset, inputs=inputs,
                               services=[s.to_dict() for s in unitset.services],
                               warnings=tuple(unitset.warnings))  # what master(8) would log


def observe(run: Runner, s: Setup) -> Observed:
    """What the host has now, read once before the plan is made (systemctl show/list-units,
    dpkg-divert --list and files: nothing that changes the host)."""
    w = s.wanted
    systemd = w.mode == "systemd"
    target_active = _host.active(run, w.target)
    holder_active = _host.active(run, w.holder)
    divert_tool = shutil.which("dpkg-divert") is not None
    others = sorted(n for n in os.listdir(_masterless_generator.CONF_DIR) if n.endswith(".conf")
                    and n != os.path.basename(w.conf_path)) if os.path.isdir(_masterless_generator.CONF_DIR) else []
    return Observed(
        unit_files=current_units(w.conf_path, w.state_path),
        files_differ=frozenset(f.path for f in w.files if _host.differs(f)),
        state_differs=systemd and _host.differs(s.state_spec()),
        conf_present=os.path.exists(w.conf_path),
        state_present=os.path.exists(w.state_path),
        master_running=master_pid(s.instance.queue_directory) is not None,
        master_units_active=systemd and any(_host.active(run, u) for u in s.master_units),
        target_active=target_active,
        holder_active=holder_active,
        slice_empty=slice_empty(run, s.instance.slice),
        failed=tuple(failed_units(run, w.prefix)),
        running=tuple(row[0] for row in own_rows(run, w.prefix) if row[2] != "inactive"),
        unhealthy=tuple(unhealthy(run, w.units, w.prefix)) if systemd and target_active and holder_active else (),
        divert_tool=divert_tool,
        diverted=divert_tool and diverted(run, w.wrapper_path),
        wrapper_differs=systemd and _host.differs(s.wrapper()),
        other_instances=tuple(others),
    )


def operations(run: Runner, s: Setup) -> dict[str, Callable[..., Any]]:
    """The functions the plan's actions name (``_host.execute``'s table)."""
    w, inst, timeout = s.wanted, s.instance, s.timeout
    writer = _host.Writer()
    postfix = os.path.join(inst.command_directory, "postfix")

    def verify() -> None:
        verify_running(run, w.units, w.prefix, timeout)

    def systemctl_verified(*args: str) -> None:
        _host.systemctl(run, *args)
        verify()

    def start() -> None:
        start_masterless(run, target=w.target, holder=inst.holder, queue_directory=inst.queue_directory,
                         timeout=timeout)
        verify()

    def stop_stale(units: Sequence[str]) -> None:
        # Also any other unit daemon-reload left without its file.
        _host.systemctl(run, "stop", *dict.fromkeys([*units, *stale_units(run, w.prefix)]))

    return {
        "write": writer.ensure,
        "write_state": lambda: writer.ensure(s.state_spec()),
        "compile": lambda: _host_package.compile_package(run, s.python, os.path.dirname(w.package)),
        "remove": lambda path: writer.ensure(FileSpec(path, absent=True)),
        "systemctl": lambda *args: _host.systemctl(run, *args),
        "systemctl_verified": systemctl_verified,
        "divert": lambda: divert_script(run, s.wrapper()),
        "undivert": lambda: undivert_script(run, w.wrapper_path),
        "stop_master": lambda: stop_master(run, queue_directory=inst.queue_directory, config_dir=s.config_dir,
                                           units=s.master_units, postfix=postfix, timeout=timeout),
        "start_master": lambda: start_master(run, queue_directory=inst.queue_directory, config_dir=s.config_dir,
                                             units=s.master_units, postfix=postfix, timeout=timeout),
        "stop_masterless": lambda: stop_masterless(run, target=w.target, slice_unit=inst.slice, timeout=timeout),
        "start_masterless": start,
        "stop_stale": stop_stale,
        "reset_failed": lambda: reset_failed(run, failed_units(run, w.prefix)),
    }
