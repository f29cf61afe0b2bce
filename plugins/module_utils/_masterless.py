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
"""

from __future__ import annotations

import os
import time
from types import ModuleType
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

from . import _bridge, _generator

PACKAGE = "mailfleet_postfix"
PAYLOAD = _generator.LIBRARY
GENERATOR_NAME = "mailfleet-postfix-generator"
Runner = Callable[[Sequence[str]], "tuple[int, str, str]"]


class MasterlessError(Exception):
    """Something the module reports with fail_json; ``line`` names the master.cf line when known."""

    def __init__(self, message: str, *, line: Optional[int] = None) -> None:
        self.line = line
        super().__init__(message)


class Host(Protocol):
    """The part of AnsibleModule used here."""

    @property
    def tmpdir(self) -> str:
        ...

    def atomic_move(self, src: str, dest: str, unsafe_writes: bool = False, keep_dest_attrs: bool = True) -> None:
        ...


def module_source(module: ModuleType) -> str:
    """The source of an imported module, also from Ansible's zipped payload."""
    loader = getattr(module, "__loader__", None)
    source = loader.get_source(module.__name__) if loader is not None and hasattr(loader, "get_source") else None
    if source is None:
        with open(module.__file__ or "", encoding="utf-8") as handle:
            source = handle.read()
    return source


class File:
    """A file (or symlink) the installation consists of."""

    def __init__(self, path: str, content: str = "", mode: int = 0o644, link: str = "") -> None:
        self.path = path
        self.content = content
        self.mode = mode
        self.link = link

    def current(self) -> tuple[str, int, str] | None:
        try:
            if os.path.islink(self.path):
                return "", 0, os.readlink(self.path)
            # surrogateescape: the stored unit set holds master.cf's bytes as they are (Postfix reads bytes).
            with open(self.path, encoding="utf-8", errors="surrogateescape") as handle:
                return handle.read(), os.stat(self.path).st_mode & 0o7777, ""
        except (OSError, UnicodeDecodeError):
            return None

    def differs(self) -> bool:
        return self.current() != (("", 0, self.link) if self.link else (self.content, self.mode, ""))


def installation(modules: Mapping[str, ModuleType], *, libexec: str, generator_dir: str, python: str) -> list[File]:
    """Generator, bridge and the library they import, from the module's payload."""
    package = os.path.join(libexec, PACKAGE)
    files = [File(os.path.join(package, "__init__.py"), "")]
    files += [File(os.path.join(package, f"{name}.py"), module_source(modules[name])) for name in PAYLOAD]
    files.append(File(os.path.join(libexec, "bridge"), _bridge.LAUNCHER.format(python=python, libexec=libexec)))
    files.append(File(os.path.join(generator_dir, GENERATOR_NAME),
                      _generator.LAUNCHER.format(python=python, libexec=libexec), mode=0o755))
    return files


def compile_library(run: Runner, python: str, package_dir: str) -> None:
    """Bytecode for the interpreter the units run: the holder and the workers' bridge run sandboxed
    (/usr read-only) and would otherwise compile the library at every start."""
    # checked-hash: the bytecode is used only while it matches the source's content (not mtime and size).
    code, out, err = run([python, "-I", "-S", "-m", "compileall", "-q", "-l", "-f", "--invalidation-mode", "checked-hash",
                          package_dir])
    if code != 0:
        raise MasterlessError(f"{python} -m compileall {package_dir} failed: {(err or out).strip()}")


def conf_text(config_dir: str, extra: Mapping[str, str]) -> str:
    lines = ["# Managed by mailfleet.postfix (systemd_units): this instance runs without master(8).",
             f"config_directory = {config_dir}"]
    lines += [f"{key} = {value}" for key, value in sorted(extra.items())]
    return "\n".join(lines) + "\n"


def write_file(host: Host, file: File) -> None:
    parent = os.path.dirname(file.path)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    if file.link:
        tmp = os.path.join(parent, f".{os.path.basename(file.path)}.{os.getpid()}")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(file.link, tmp)
        os.replace(tmp, file.path)
        return
    tmp = os.path.join(host.tmpdir, os.path.basename(file.path))
    with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(file.content)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, file.mode)
    host.atomic_move(tmp, file.path, keep_dest_attrs=False)
    os.chmod(file.path, file.mode)
    # Durable before the module reports success: atomic_move may have copied across file systems,
    # and the unit set kept in /var/lib is what the next boot falls back to.
    for path, flags in ((file.path, os.O_RDONLY), (parent, os.O_RDONLY | os.O_DIRECTORY)):
        fd = os.open(path, flags | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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


def script_wrapper(daemon_directory: str, conf_dir: str) -> File:
    path = os.path.join(daemon_directory, SCRIPT_NAME)
    return File(path, SCRIPT_WRAPPER.format(real=path + DIVERTED_SUFFIX, conf_dir=conf_dir), mode=0o755)


def diverted(run: Runner, path: str) -> bool:
    code, out, _unused = run(["dpkg-divert", "--list", path])
    return code == 0 and path + DIVERTED_SUFFIX in out


def divert_script(run: Runner, host: Host, wrapper: File) -> None:
    """Move Postfix's script aside (package upgrades then update it there) and install the wrapper."""
    if not diverted(run, wrapper.path):
        code, out, err = run(["dpkg-divert", "--local", "--rename", "--divert", wrapper.path + DIVERTED_SUFFIX,
                              "--add", wrapper.path])
        if code != 0:
            raise MasterlessError(f"dpkg-divert {wrapper.path} failed: {(err or out).strip()}")
    write_file(host, wrapper)


def undivert_script(run: Runner, path: str) -> None:
    """Postfix's own script back in place."""
    if os.path.exists(path + DIVERTED_SUFFIX) and os.path.exists(path):
        os.unlink(path)
    code, out, err = run(["dpkg-divert", "--local", "--rename", "--remove", path])
    if code != 0:
        raise MasterlessError(f"dpkg-divert --remove {path} failed: {(err or out).strip()}")


# --------------------------------------------------------------------------- what runs now


def master_pid(queue_directory: str) -> Optional[int]:
    """The pid of a running master(8) of this instance (pid/master.pid names it), if any."""
    try:
        with open(os.path.join(queue_directory, "pid", "master.pid"), encoding="ascii") as handle:
            pid = int(handle.read().split()[0])
        with open(f"/proc/{pid}/comm", encoding="ascii") as handle:
            return pid if handle.read().strip() == "master" else None
    except (OSError, ValueError, IndexError):
        return None


def unit_state(run: Runner, unit: str) -> dict[str, str]:
    code, out, _unused = run(["systemctl", "show", "-p", "LoadState,ActiveState,SubState", "--", unit])
    state = dict(line.split("=", 1) for line in out.splitlines() if "=" in line) if code == 0 else {}
    return state


def active(run: Runner, unit: str) -> bool:
    return unit_state(run, unit).get("ActiveState") in ("active", "reloading", "activating")


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


def systemctl(run: Runner, *args: str) -> None:
    code, out, err = run(["systemctl", *args])
    if code != 0:
        raise MasterlessError(f"systemctl {' '.join(args)} failed: {(err or out).strip()}")


# --------------------------------------------------------------------------- switching


def stop_master(run: Runner, *, queue_directory: str, config_dir: str, units: Sequence[str], postfix: str,
                timeout: float) -> bool:
    """Stop master(8) of this instance completely; True when one was running."""
    pid = master_pid(queue_directory)
    running_units = [u for u in units if active(run, u)]
    if pid is None and not running_units:
        return False
    for unit in running_units:
        systemctl(run, "stop", unit)
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
        if unit_state(run, unit).get("LoadState") == "loaded":
            systemctl(run, "start", unit)
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
    if not active(run, target) and slice_empty(run, slice_unit):
        return False
    systemctl(run, "stop", target)
    if not wait_until(lambda: slice_empty(run, slice_unit), timeout):
        raise MasterlessError(f"processes of {slice_unit} were still running {timeout:.0f}s after stopping {target}")
    return True


def start_masterless(run: Runner, *, target: str, holder: str, queue_directory: str, timeout: float) -> None:
    systemctl(run, "start", target)
    ok = wait_until(lambda: active(run, holder + ".service") and master_pid(queue_directory) is None, timeout)
    if not ok:
        raise MasterlessError(f"{target} started, but {holder}.service is not running (see journalctl -u '{holder}*')")


# The type slugs of unit names (_units.TYPE_SLUG): <prefix>-<service>-<slug>[-wakeup][@N].<suffix>.
# One predicate for the module and the holder (which runs alone on the host): _bridge.own_unit.
UNIT_SLUGS = _bridge.UNIT_SLUGS
own_unit = _bridge.own_unit


def _listed(run: Runner, *options: str) -> list[list[str]]:
    """systemctl list-units rows (unit, load, active, sub) of every postfix-* unit."""
    code, out, _unused = run(["systemctl", "list-units", "--all", "--plain", "--no-legend", *options, "--", "postfix-*"])
    rows = []
    for line in out.splitlines() if code == 0 else []:
        words = line.split()
        if words and words[0] in ("\u25cf", "*"):  # the failed-unit bullet, should --plain ever keep it
            words = words[1:]
        if len(words) >= 4:
            rows.append(words[:4])
    return rows


def stale_units(run: Runner, prefix: str) -> list[str]:
    """Units of the instance that are loaded but no longer generated (master.cf entry removed)."""
    return [w[0] for w in _listed(run) if w[1] == "not-found" and w[2] != "inactive" and own_unit(prefix, w[0])]


def failed_units(run: Runner, prefix: str) -> list[str]:
    """The instance's units in the failed state, generated now or not any more (not-found)."""
    return [w[0] for w in _listed(run, "--state=failed") if w[2] == "failed" and own_unit(prefix, w[0])]


def reset_failed(run: Runner, units: Sequence[str]) -> None:
    """Forget the failed state of exactly these units (systemd drops them once they are not-found)."""
    if units:
        systemctl(run, "reset-failed", "--", *units)


def unit_states(run: Runner, units: Sequence[str]) -> dict[str, dict[str, str]]:
    """Id -> LoadState, ActiveState, SubState, Result of each unit, in one systemctl call."""
    if not units:
        return {}
    code, out, _unused = run(["systemctl", "show", "-p", "Id,LoadState,ActiveState,SubState,Result", "--", *units])
    states: dict[str, dict[str, str]] = {}
    for block in out.split("\n\n") if code == 0 else []:
        state = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if state.get("Id"):
            states[state["Id"]] = state
    return states


def _describe(unit: str, state: Mapping[str, str]) -> str:
    keys = ("LoadState", "ActiveState", "SubState", "Result")
    return f"{unit} (" + ", ".join(f"{k}={state.get(k, '?')}" for k in keys) + ")"


def listening(state: Mapping[str, str]) -> bool:
    """A socket unit that has its listener: waiting (listening) or handed to its service (running)."""
    return state.get("ActiveState") == "active" and state.get("SubState") in ("listening", "running")


def unhealthy(run: Runner, units: Sequence[str], prefix: str) -> list[str]:
    """Generated socket units that do not listen and failed units of the instance, described."""
    sockets = sorted(u for u in units if u.endswith(".socket"))
    states = unit_states(run, sockets)
    problems = [_describe(s, states.get(s, {})) for s in sockets if not listening(states.get(s, {}))]
    failed = [u for u in failed_units(run, prefix) if u not in sockets]
    states = unit_states(run, failed)
    return problems + [_describe(u, states.get(u, {})) for u in failed]


def verify_running(run: Runner, units: Sequence[str], prefix: str, timeout: float) -> None:
    """Every generated socket listens and no unit of the instance failed, or raise naming them."""
    sockets = [u for u in units if u.endswith(".socket")]

    def settled() -> bool:
        states = unit_states(run, sockets)
        return all(states.get(s, {}).get("ActiveState") not in ("activating", "deactivating", "reloading")
                   for s in sockets)

    wait_until(settled, timeout)
    problems = unhealthy(run, units, prefix)
    if problems:
        raise MasterlessError("the instance does not run as generated: " + "; ".join(problems)
                              + f" (see systemctl status and journalctl -u '{prefix}-*')")


def summarize(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, list[str]]:
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "modified": sorted(n for n in set(before) & set(after) if before[n] != after[n]),
    }


def diff_text(files: Mapping[str, str]) -> str:
    return "".join(f"### {name}\n{content}" + ("" if content.endswith("\n") else "\n")
                   for name, content in sorted(files.items()))


def result(**values: Any) -> dict[str, Any]:
    return values
