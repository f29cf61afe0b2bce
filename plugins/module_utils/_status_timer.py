# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The metrics timer: a sandboxed oneshot service and its timer that write instance_info's figures
for node_exporter's textfile collector (the metrics_timer module's plan).

Private to the mailfleet.postfix collection; the API may change without notice.

One timer per host covers every instance on it, as instance_info does. The service runs the
library package's ``_status_cli`` (installed whole by ``_host_package``) as root, because the
queue directories are readable by the mail owner only; the sandbox leaves it the metrics
directory to write and nothing else.
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import Callable, Mapping, Optional, Sequence

from . import _host, _host_package, _status_cli
from ._host import Action, FileSpec, Record, Runner

UNIT = "mailfleet-postfix-metrics"
DEFAULT_INTERVAL = 60
PYTHON = "/usr/bin/python3"
# A path written into the unit as it is: no quoting, no specifier (%), no space, nothing systemd or
# a shell would read differently.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._@+/-]*\.prom$")


class TimerError(Exception):
    """The wanted timer cannot be set up; nothing was changed."""


class Wanted(Record):
    _fields = ("state", "path", "interval", "queue_details", "exposure", "python", "libexec", "unit_dir")
    state: str
    path: str
    interval: int = DEFAULT_INTERVAL
    queue_details: bool = False
    exposure: bool = True
    python: str = PYTHON
    libexec: str = "/usr/libexec/mailfleet-postfix"
    unit_dir: str = "/etc/systemd/system"

    @property
    def service_path(self) -> str:
        return posixpath.join(self.unit_dir, f"{UNIT}.service")

    @property
    def timer_path(self) -> str:
        return posixpath.join(self.unit_dir, f"{UNIT}.timer")

    @property
    def launcher(self) -> str:
        return posixpath.join(self.libexec, _status_cli.LAUNCHER_NAME)


def checked_path(path: str) -> str:
    path = posixpath.normpath(path) if path else ""
    if not _SAFE_PATH.match(path) or path.startswith("//"):
        raise TimerError(f"path {path!r}: must be an absolute file name ending in .prom (node_exporter reads only "
                         "those), of letters, digits and . _ @ + - / only")
    return path


# Directories the service must never be given to write (ReadWritePaths= is the metrics file's directory).
_SYSTEM_DIRS = frozenset(("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root",
                          "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib", "/var/log",
                          "/var/spool", "/var/tmp"))
_SYSTEM_TREES = ("/boot/", "/dev/", "/etc/", "/proc/", "/sys/", "/usr/")


def checked(wanted: Wanted) -> Wanted:
    if wanted.state == "absent":
        return wanted
    if not 10 <= wanted.interval <= 86400:
        raise TimerError(f"interval {wanted.interval}: must be 10 to 86400 seconds")
    for name in ("python", "libexec", "unit_dir"):
        value = getattr(wanted, name)
        if not value.startswith("/") or not re.match(r"^[A-Za-z0-9._@+/-]+$", value):
            raise TimerError(f"{name} {value!r}: must be an absolute path of letters, digits and . _ @ + - / only")
    path = checked_path(wanted.path)
    directory = posixpath.dirname(path)
    if directory in _SYSTEM_DIRS or directory.startswith(_SYSTEM_TREES):
        raise TimerError(f"path {path!r}: the service may write its directory, so it must be a directory of its "
                         "own (node_exporter's textfile directory), not a system directory")
    return Wanted(**{**wanted.to_dict(), "path": path})


def host_problems(w: Wanted) -> list[str]:
    """What on the host would let another user run code as root or redirect the service's writes."""
    problems = []
    for item in (w.python, posixpath.dirname(w.python)):
        try:
            st = os.stat(item)
        except OSError as exc:
            problems.append(f"python {w.python}: {item}: {exc.strerror}")
            continue
        if st.st_uid != 0 or st.st_mode & 0o022:
            problems.append(f"python {w.python}: {item} is not root's alone (owner uid {st.st_uid}, mode "
                            f"{st.st_mode & 0o7777:04o}); the service runs it as root")
    existing = posixpath.dirname(w.path)
    while not os.path.exists(existing):
        existing = posixpath.dirname(existing)
    if os.path.realpath(existing) != existing:
        problems.append(f"path {w.path}: {existing} is or passes through a symbolic link; systemd would follow it "
                        "for ReadWritePaths=, so give the real directory")
    return problems


def service_text(w: Wanted) -> str:
    argv = [w.python, "-I", "-S", w.launcher, "--metrics", w.path]
    argv += [] if w.queue_details else ["--no-queue-details"]
    argv += [] if w.exposure else ["--no-exposure"]
    return f"""# Written by mailfleet.postfix (metrics_timer); changes are overwritten.
[Unit]
Description=Postfix status of every instance for node_exporter ({w.path})
Documentation=man:postqueue(1) man:systemd-analyze(1)
After=postfix.service

[Service]
Type=oneshot
ExecStart={' '.join(argv)}
# A status run must never compete with mail.
Nice=10
IOSchedulingClass=idle
TimeoutStartSec=5min
MemoryMax=256M
TasksMax=32
UMask=0022
# Root for the queue directories (readable by the mail owner only) and postqueue's stand-alone
# showq when an instance is down; nothing else: the only write is the metrics file.
CapabilityBoundingSet=CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_SETUID CAP_SETGID
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={posixpath.dirname(w.path)}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateMounts=yes
# systemctl, systemd-analyze and postqueue speak over sockets in the file system only.
PrivateNetwork=yes
RestrictAddressFamilies=AF_UNIX
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
"""


def timer_text(w: Wanted) -> str:
    return f"""# Written by mailfleet.postfix (metrics_timer); changes are overwritten.
[Unit]
Description=Postfix status for node_exporter every {w.interval} s

[Timer]
OnActiveSec=1s
# From the end of the previous run: a slow run (a huge queue) never overlaps the next.
OnUnitInactiveSec={w.interval}s
AccuracySec=1s

[Install]
WantedBy=timers.target
"""


def file_specs(w: Wanted) -> list[FileSpec]:
    """Every path the timer needs; for V(absent), the units gone (the package stays: other modules use it)."""
    if w.state == "absent":
        return [FileSpec(w.timer_path, absent=True), FileSpec(w.service_path, absent=True)]
    return _host_package.package_files(w.libexec) + [
        FileSpec(w.launcher, _status_cli.LAUNCHER.format(python=w.python, libexec=w.libexec), mode=0o755),
        # ReadWritePaths= needs it at start; an existing one keeps its mode and owner (node_exporter's).
        FileSpec(posixpath.dirname(w.path), directory=True, mode=None),
        FileSpec(w.service_path, service_text(w)),
        FileSpec(w.timer_path, timer_text(w)),
    ]


def installed_path(service: str) -> Optional[str]:
    """The metrics file an installed service writes, when it is there as a regular file."""
    try:
        text = _host.read_text(service)
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            argv = line.split()
            if "--metrics" in argv[:-1]:
                path = argv[argv.index("--metrics") + 1]
                seen = _host.observe(path) if _SAFE_PATH.match(path) else None
                return path if seen is not None and seen.kind == "file" else None
    return None


class Observed(Record):
    _fields = ("loaded", "enabled", "active", "old_path")
    loaded: bool = False
    enabled: bool = False
    active: bool = False
    old_path: Optional[str] = None


def observe(run: Runner, w: Wanted, booted: bool) -> Observed:
    timer = f"{UNIT}.timer"
    state = _host.unit_state(run, timer) if booted else {}
    return Observed(loaded=state.get("LoadState") == "loaded", enabled=booted and _host.enabled(run, timer),
                    active=state.get("ActiveState") in ("active", "activating"),
                    old_path=installed_path(w.service_path))


def plan(w: Wanted, now: Observed, changed: Sequence[FileSpec], booted: bool) -> list[Action]:
    """The ordered actions from what is installed to what is wanted (nothing when they agree)."""
    timer = f"{UNIT}.timer"
    package = _host_package.package_dir(w.libexec)
    actions: list[Action] = []
    if w.state == "absent":
        if booted and (now.active or now.enabled):
            actions.append(Action(f"stop and disable {timer}", "systemctl", ("disable", "--now", timer)))
        actions += [Action(f"remove {s.path}", "write", (s,)) for s in changed]
        if booted and changed:
            actions.append(Action("reload systemd", "systemctl", ("daemon-reload",)))
        if now.old_path:
            # A stale file would be scraped as current figures forever.
            actions.append(Action(f"remove {now.old_path}", "write", (FileSpec(now.old_path, absent=True),)))
        return actions
    actions += [Action(f"write {s.path}", "write", (s,)) for s in changed]
    if any(s.path.startswith(package + "/") for s in changed):
        actions.append(Action(f"compile {package}", "compile", (w.python, w.libexec)))
    units_changed = any(s.path in (w.service_path, w.timer_path) for s in changed)
    if booted and units_changed:
        actions.append(Action("reload systemd", "systemctl", ("daemon-reload",)))
    if booted and not (now.enabled and now.active):
        actions.append(Action(f"enable and start {timer}", "systemctl", ("enable", "--now", timer)))
    if now.old_path and now.old_path != w.path:
        actions.append(Action(f"remove {now.old_path} (the previous metrics file)", "write",
                              (FileSpec(now.old_path, absent=True),)))
    return actions


def operations(run: Runner) -> Mapping[str, Callable[..., object]]:
    writer = _host.Writer()
    return {
        "write": writer.ensure,
        "compile": lambda python, libexec: _host_package.compile_package(run, python, libexec),
        "systemctl": lambda *args: _host.systemctl(run, *args),
    }
