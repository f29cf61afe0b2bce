# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared helpers of the benchmarks: podman containers, the bench fleet, journals, statistics.

Everything the benchmarks start is named ``mailfleet-bench-*`` and labelled ``io.mailfleet.bench=1``,
so it never collides with the lab (``mailfleet-lab-*``) or molecule (``mailfleet-mol-*``).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parent.parent
# Runtime state (SSH key, inventories, playbook logs): build/ is git- and build-ignored.
STATE = ROOT / "build" / "bench"
RESULTS = ROOT / "bench" / "results"
PREFIX = "mailfleet-bench-"
NETWORK = "mailfleet-bench"
LABEL = "io.mailfleet.bench=1"
DOMAIN = "bench.example"
USER = "alice"
KEY = STATE / "id_ed25519"
VENV_BIN = ROOT / ".venv" / "bin"
IMAGE = os.environ.get("MAILFLEET_LAB_IMAGE", "localhost/mailfleet-lab:latest")

# Postfix logs a few lines per message; journald's default (10,000 lines per 30 s per unit) would
# drop lines of a 1,000-message round, and the measurements are read from those lines.
JOURNALD_DROPIN = "[Journal]\nRateLimitIntervalSec=0\nRateLimitBurst=0\n"

_T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:6.0f}s] bench: {msg}", flush=True)


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def env_list(name: str, default: list[int]) -> list[int]:
    value = os.environ.get(name, "")
    return [int(v) for v in value.replace(",", " ").split()] if value.strip() else default


def run(cmd: list[str], *, check: bool = True, timeout: float | None = None, input: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout, input=input, env=env)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])}… failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-800:]}")
    return proc


def podman(*args: str, check: bool = True, timeout: float | None = 300) -> str:
    return run(["podman", *args], check=check, timeout=timeout).stdout.strip()


def pexec(container: str, command: str, *, input: str | None = None, check: bool = True,
          privileged: bool = False, timeout: float | None = 900) -> str:
    """Run a shell command in a container and return its stdout."""
    cmd = ["podman", "exec", "-i"] + (["--privileged"] if privileged else []) + [container, "sh", "-c", command]
    return run(cmd, input=input, check=check, timeout=timeout).stdout


def pypexec(container: str, script: str, *args: str, privileged: bool = False, timeout: float | None = 900) -> str:
    """Run a Python script (text) with arguments inside a container; returns stdout."""
    cmd = ["podman", "exec", "-i"] + (["--privileged"] if privileged else []) + [container, "python3", "-", *args]
    return run(cmd, input=script, timeout=timeout).stdout


def ip_of(container: str) -> str:
    return podman("inspect", "--format", f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}', container)


def cpu_ns(container: str) -> int:
    """CPU time used by everything in a container so far (host side, no exec: costs nothing)."""
    cid = podman("inspect", "--format", "{{.Id}}", container)
    for path in (f"/sys/fs/cgroup/cpuacct/libpod_parent/libpod-{cid}/cpuacct.usage",
                 f"/sys/fs/cgroup/libpod_parent/libpod-{cid}/cpu.stat"):
        try:
            text = Path(path).read_text(encoding="ascii")
        except OSError:
            continue
        if path.endswith("cpuacct.usage"):
            return int(text)
        for line in text.splitlines():
            if line.startswith("usage_usec"):
                return int(line.split()[1]) * 1000
    return 0


def bench_containers() -> list[str]:
    out = podman("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}", check=False)
    return [n for n in out.split() if n.startswith(PREFIX)]


def remove_containers(names: Iterable[str]) -> None:
    names = [n for n in names if n.startswith(PREFIX)]
    if names:
        podman("rm", "-f", "-t", "5", *names, check=False)


def ensure_network() -> None:
    have = podman("network", "ls", "--filter", f"label={LABEL}", "--format", "{{.Name}}", check=False).split()
    if NETWORK not in have:
        podman("network", "create", "--label", LABEL, NETWORK)


def teardown() -> None:
    """Remove every bench container and the bench network, nothing else."""
    remove_containers(bench_containers())
    have = podman("network", "ls", "--filter", f"label={LABEL}", "--format", "{{.Name}}", check=False).split()
    if NETWORK in have:
        podman("network", "rm", NETWORK, check=False)


def ensure_key() -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    if not KEY.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mailfleet bench throwaway key", "-f", str(KEY)])


def start_containers(hosts: dict[str, str]) -> None:
    """Start containers (short name -> group) from the lab image, in parallel, and wait for systemd."""
    ensure_network()
    ensure_key()
    for host, group in hosts.items():
        name = PREFIX + host
        remove_containers([name])
        podman("run", "-d", "--name", name, "--hostname", f"{host}.{DOMAIN}", "--network", NETWORK,
               "--network-alias", host, "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
               "--label", LABEL, "--label", f"io.mailfleet.bench.group={group}",
               "--volume", f"{KEY}.pub:/root/.ssh/authorized_keys:ro", IMAGE, "/sbin/init")
    # systemctl cannot reach PID 1 for the first moments after the container starts: retry.
    boot = ("for i in $(seq 90); do s=$(systemctl is-system-running --wait 2>/dev/null);"
            " case $s in running|degraded) break;; esac; sleep 1; done;"
            " mkdir -p /etc/systemd/journald.conf.d"
            f" && printf '{JOURNALD_DROPIN}' > /etc/systemd/journald.conf.d/mailfleet-bench.conf"
            " && systemctl restart systemd-journald && echo $s")
    procs = {h: subprocess.Popen(["podman", "exec", PREFIX + h, "sh", "-c", boot], stdout=subprocess.PIPE, text=True)
             for h in hosts}
    for host, proc in procs.items():
        state, _unused = proc.communicate(timeout=180)
        if state.strip() not in ("running", "degraded"):
            raise RuntimeError(f"{PREFIX}{host} did not boot: systemd is '{state.strip()}'")
    for host in hosts:
        wait_ssh(ip_of(PREFIX + host))


def wait_ssh(ip: str, tries: int = 60) -> None:
    for _unused in range(tries):
        proc = subprocess.run(["ssh", "-q", "-i", str(KEY), "-o", "BatchMode=yes", "-o", "ConnectTimeout=2",
                               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                               "-o", "LogLevel=ERROR", f"root@{ip}", "true"], check=False)
        if proc.returncode == 0:
            return
        time.sleep(1)
    raise RuntimeError(f"no SSH to {ip}")


def write_inventory(path: Path, groups: dict[str, list[str]], extra: dict[str, Any]) -> None:
    """An SSH inventory for bench containers, like lab/.state/inventory.ini."""
    lines = ["# Written by bench/ for the running bench fleet."]
    for group, hosts in groups.items():
        lines.append(f"[{group}]")
        lines += [f"{h} ansible_host={ip_of(PREFIX + h)} bench_container={PREFIX + h}" for h in hosts]
        lines.append("")
    lines += [
        "[all:vars]",
        "ansible_user=root",
        f"ansible_ssh_private_key_file={KEY}",
        "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'",
        "ansible_python_interpreter=/usr/bin/python3",
    ]
    lines += [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    if not env.get("ANSIBLE_COLLECTIONS_PATH"):
        run([str(ROOT / "tools" / "collection-link.sh")])
        env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / "build" / "collections")
    env.setdefault("ANSIBLE_ROLES_PATH", str(ROOT / "roles"))
    env.update({
        "ANSIBLE_PIPELINING": "True", "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_FORKS": "10", "ANSIBLE_GATHERING": "explicit", "ANSIBLE_NOCOLOR": "1",
        # The lab's recording callback gives the per-host recap as JSON.
        "ANSIBLE_CALLBACK_PLUGINS": str(ROOT / "lab" / "callback"), "ANSIBLE_CALLBACKS_ENABLED": "mailfleet_lab",
    })
    return env


def playbook(inventory: Path, book: Path, log: Path, *extra: str) -> dict[str, Any]:
    """Run a playbook; returns wall seconds, rc and the per-host recap recorded by the lab callback."""
    result = log.with_suffix(".json")
    result.unlink(missing_ok=True)
    env = ansible_env()
    env["MAILFLEET_LAB_RESULT"] = str(result)
    t0 = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        rc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(book), *extra],
                            stdout=out, stderr=subprocess.STDOUT, env=env, check=False, timeout=3600).returncode
    wall = time.monotonic() - t0
    record = json.loads(result.read_text(encoding="utf-8")) if result.exists() else {}
    return {"rc": rc, "seconds": round(wall, 1), "hosts": record.get("hosts", {}), "failures": record.get("failures", [])}


def site_playbook() -> Path:
    """The site playbook, or BENCH_SITE."""
    override = os.environ.get("BENCH_SITE")
    return Path(override).resolve() if override else ROOT / "playbooks" / "site.yml"


# -- journals -----------------------------------------------------------------------------------


def journal_cursor(container: str) -> str:
    out = pexec(container, "journalctl --show-cursor -n 0 -q")
    for line in out.splitlines():
        if line.startswith("-- cursor: "):
            return line[len("-- cursor: "):].strip()
    return ""


@dataclass
class LogLine:
    ts: float
    ident: str  # e.g. postfix/smtpd
    msg: str
    pid: int = 0


def journal_since(container: str, cursor: str) -> list[LogLine]:
    """Mail log lines (facility mail) after a cursor, with journald's microsecond timestamps."""
    after = f"--after-cursor='{cursor}'" if cursor else ""
    out = pexec(container, f"journalctl -q -o short-unix --no-pager SYSLOG_FACILITY=2 {after}")
    lines = []
    for raw in out.splitlines():
        # 1795725281.669176 host postfix/smtpd[388]: message
        try:
            ts, _host, rest = raw.split(" ", 2)
            ident, msg = rest.split(": ", 1)
            name, _sep, pid = ident.partition("[")
            lines.append(LogLine(float(ts), name, msg, int(pid.rstrip("]") or 0)))
        except ValueError:
            continue
    return lines


# -- statistics ---------------------------------------------------------------------------------


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def percentile(xs: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


@dataclass
class Results:
    """One bench run: everything measured, written as JSON under bench/results/."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def machine() -> dict[str, Any]:
    load = Path("/proc/loadavg").read_text(encoding="ascii").split()[:3]
    return {"cores": os.cpu_count(), "loadavg": load, "image": IMAGE,
            "podman": podman("--version", check=False), "python": sys.version.split()[0],
            "kernel": os.uname().release}


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table (also readable as plain text)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    out = [fmt.format(*headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt.format(*r) for r in cells]
    return "\n".join(out)


def which(name: str) -> str:
    found = shutil.which(name, path=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    if not found:
        raise RuntimeError(f"{name} not found; run: make venv")
    return found
