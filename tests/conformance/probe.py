# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs on the lab host (python3, standard library only) and prints JSON for harness.py.

Nothing here imports the collection: what master(8) runs comes from master(8) itself (``master -v``
prints every parsed entry, src/master/master_ent.c print_master_ent), what master-less runs comes from
systemd over D-Bus (the argv systemd will exec, after its own unquoting), and what listens comes from
ss(8) and /proc.

    probe.py cursor                          journal cursor to read master's dump after
    probe.py master-dump CURSOR              master's parsed entries since CURSOR
    probe.py endpoints QUEUE_DIR [BASELINE]  live listeners (minus the baseline's) as JSON
    probe.py units INSTANCE                  generated services, sockets and timers as systemd loaded them
"""

from __future__ import annotations

import glob
import json
import os
import re
import stat
import subprocess
import sys
import time
from typing import Any, Callable, Optional

BUS = ["busctl", "--json=short", "get-property", "org.freedesktop.systemd1"]
GENERATOR_DIRS = ("/run/systemd/generator", "/run/systemd/generator.late")


def run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False, errors="surrogateescape").stdout


def cursor() -> str:
    out = run(["journalctl", "-n", "0", "--show-cursor", "--no-pager"])
    return next((line[len("-- cursor: "):] for line in out.splitlines() if line.startswith("-- cursor: ")), "")


def master_dump(after: str) -> dict[str, Any]:
    """print_master_ent's blocks, once master has logged that it started (or died)."""
    lines: list[str] = []
    for _attempt in range(50):
        argv = ["journalctl", "--no-pager", "-o", "cat", "-t", "postfix/master"]
        out = run(argv + ([f"--after-cursor={after}"] if after else []))
        lines = out.splitlines()
        if any("daemon started" in line or "fatal:" in line for line in lines):
            break
        time.sleep(0.1)
    entries: list[dict[str, Any]] = []
    messages: list[str] = []
    cur: Optional[dict[str, Any]] = None
    for line in lines:
        if line == "====start service entry":
            cur = {"argv": []}
        elif line == "====end service entry" and cur is not None:
            entries.append(cur)
            cur = None
        elif cur is not None:
            key, _sep, value = line.partition(": ")
            match = re.fullmatch(r"arg\[(\d+)\]", key)
            if match:
                cur["argv"].append(value)
            elif key in ("flags", "wakeup", "max_proc", "listen_fd_count"):
                cur[key] = int(value)
            elif key in ("name", "type", "path"):
                cur[key] = value
        elif line.startswith(("warning:", "fatal:", "error:", "panic:")) or "duplicate" in line:
            messages.append(line)
    return {"entries": entries, "messages": messages}


def _unix_paths(queue: str) -> list[tuple[str, str]]:
    found = []
    for line in run(["ss", "-lnxH"]).splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        kind = {"u_str": "stream", "u_dgr": "dgram", "u_seq": "seqpacket"}.get(parts[0])
        path = parts[4]
        if kind is None or path in ("*", "@"):
            continue
        found.append((os.path.join(queue, path) if not path.startswith("/") else path, kind))
    return found


def _open_fifos(queue: str) -> list[tuple[str, str]]:
    """FIFOs under public/ and private/ with a reader (master or systemd): a non-blocking open for
    writing succeeds only then (ENXIO otherwise), and writes nothing."""
    live = []
    for sub in ("public", "private"):
        base = os.path.join(queue, sub)
        try:
            names = sorted(os.listdir(base))
        except OSError:
            continue
        for name in names:
            path = os.path.join(base, name)
            try:
                if not stat.S_ISFIFO(os.lstat(path).st_mode):
                    continue
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
            except OSError:
                continue
            os.close(fd)
            live.append((path, "fifo"))
    return live


def _stale(queue: str, live: set[str]) -> list[str]:
    """Sockets and FIFOs under public/ and private/ that nothing listens on (informative)."""
    out = []
    for sub in ("public", "private"):
        for path in sorted(glob.glob(os.path.join(queue, sub, "*"))):
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if (stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode)) and path not in live:
                out.append(f"{path} ({'fifo' if stat.S_ISFIFO(mode) else 'socket'})")
    return out


def endpoints(queue: str, baseline: str = "") -> dict[str, Any]:
    inet: list[list[str]] = []
    for line in run(["ss", "-lntuH"]).splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        addr, _sep, port = parts[4].rpartition(":")
        addr = addr.split("%", 1)[0]
        family = "inet6" if addr.startswith("[") or ":" in addr else "inet"
        inet.append([parts[0], family, addr, port])
    unix: list[list[str]] = [[p, k] for p, k in _unix_paths(queue) + _open_fifos(queue)]
    if baseline and os.path.exists(baseline):
        with open(baseline, encoding="utf-8") as handle:
            base = json.load(handle)
        inet = [e for e in inet if e not in base["inet"]]
        unix = [e for e in unix if e not in base["unix"]]
    unix = [e for e in unix if e[0].startswith(queue.rstrip("/") + "/")]
    result: dict[str, Any] = {"inet": sorted(inet), "unix": sorted(unix)}
    result["stale"] = _stale(queue, {e[0] for e in unix})
    return result


def _bus_path(unit: str) -> str:
    return "/org/freedesktop/systemd1/unit/" + "".join(
        c if c.isalnum() and c.isascii() else f"_{b:02x}" for c, b in ((chr(b), b) for b in unit.encode()))


def _props(unit: str, iface: str, *names: str) -> dict[str, Any]:
    out = run(BUS + [_bus_path(unit), f"org.freedesktop.systemd1.{iface}", *names])
    values = [json.loads(line)["data"] for line in out.splitlines() if line.strip()]
    return dict(zip(names, values)) if len(values) == len(names) else {}


def _unescape(name: str) -> str:
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), name)


def units(instance: str) -> dict[str, Any]:
    prefix = f"postfix-{instance}-"
    files: dict[str, str] = {}
    for directory in GENERATOR_DIRS:
        for path in sorted(glob.glob(os.path.join(glob.escape(directory), prefix + "*"))):
            files.setdefault(os.path.basename(path), path)
    services: dict[str, Any] = {}
    sockets: dict[str, Any] = {}
    timers: dict[str, Any] = {}
    for name in sorted(files):
        if name.endswith(".socket") and not name.startswith(prefix + "holder"):
            props = _props(name, "Socket", "Listen", "Accept", "MaxConnections")
            props.update(_props(name, "Unit", "ActiveState", "SubState"))
            sockets[name[:-len(".socket")]] = props
        elif name.endswith(".timer"):
            props = _props(name, "Timer", "TimersMonotonic", "Unit")
            props.update(_props(name, "Unit", "ActiveState"))
            wakeup = props.get("Unit", "")
            props["service"] = _props(wakeup, "Service", "ExecStart", "ExecCondition") if wakeup else {}
            timers[name[:-len(".timer")]] = props
        elif name.endswith(".service") and not name.startswith(prefix + "holder") \
                and not name.endswith("-wakeup.service"):
            template = name.endswith("@.service")
            loaded = name[:-len("@.service")] + "@1.service" if template else name
            base = name[:-len("@.service")] if template else name[:-len(".service")]
            props = _props(loaded, "Service", "ExecStart", "User")
            props["template"] = template
            services[base] = props
    failed = run(["systemctl", "list-units", "--failed", "--plain", "--no-legend", "--all"]).split("\n")
    return {"services": services, "sockets": sockets, "timers": timers,
            "failed": [line.split()[0] for line in failed if line.strip()],
            "names": {k: _unescape(k) for k in list(services) + list(sockets) + list(timers)}}


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "cursor":
        print(cursor())
        return 0
    commands: dict[str, Callable[..., Any]] = {"master-dump": master_dump, "endpoints": endpoints, "units": units}
    result = commands[cmd](*args)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
