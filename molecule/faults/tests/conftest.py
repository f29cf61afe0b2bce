# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The faults scenario's fleet: hosts, a load generator with one token per message, mailbox counts.

Every message carries a unique Message-ID; the client records for each one whether the edge took
responsibility (250 after DATA), refused it, or whether the connection broke after the message was
sent but before the reply ("ambiguous": SMTP cannot tell, so it may arrive once or not at all).
"Lost" is an accepted message that never reaches the mailbox; "duplicate" one that arrives twice.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import testinfra
from molecule_podman_hosts import hosts_in_group

NETWORK = "mailfleet-mol-faults"
DOMAIN = "faults.example"
USER = "alice"
MAILDIR = f"/home/{USER}/Maildir"


def _names(group: str) -> list[str]:
    return [spec.split("://", 1)[1] for spec in hosts_in_group(group)]


# Runs on the client: paced SMTP load, each message retried (like an MTA would) until the edge
# answers for it, except after a broken connection during the message body (ambiguous).
LOADER = r"""
import json, smtplib, sys, threading, time
run, n, conc, rate, servers, rcpt, progress = sys.argv[1:8]
n, conc, rate, servers = int(n), int(conc), float(rate), servers.split(",")
status, lock, counter = {}, threading.Lock(), [0]
t0 = time.monotonic()

def take():
    with lock:
        if counter[0] >= n:
            return None
        i = counter[0]
        counter[0] += 1
    pause = t0 + i / rate - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    return i

def send(i):
    token = f"{run}-{i:05d}"
    body = "".join(f"{token} line {k:02d} " + "x" * 50 + "\r\n" for k in range(20))
    msg = (f"From: <load@client.invalid>\r\nTo: <{rcpt}>\r\nSubject: {token}\r\n"
           f"Message-ID: <{token}@faults.invalid>\r\n\r\n{body}")
    deadline, attempts = time.monotonic() + 240, 0
    while True:
        attempts += 1
        phase = "connect"
        try:
            with smtplib.SMTP(servers[i % len(servers)], 25, timeout=30) as s:
                s.ehlo("client.invalid")
                code, _ = s.mail("load@client.invalid")
                if code == 250:
                    code, _ = s.rcpt(rcpt)
                if code == 250:
                    code, _ = s.docmd("DATA")
                if code == 354:
                    phase = "body"
                    s.send(smtplib.quotedata(msg) + "\r\n.\r\n")
                    code, _ = s.getreply()
                    if code == 250:
                        return token, "accepted", attempts
                if 500 <= code < 600:
                    return token, f"rejected {code}", attempts
        except (OSError, smtplib.SMTPException):
            if phase == "body":
                return token, "ambiguous", attempts
        if time.monotonic() > deadline:
            return token, "failed", attempts
        time.sleep(0.5)

def worker():
    while (i := take()) is not None:
        token, state, attempts = send(i)
        with lock:
            status[token] = [state, attempts]

threads = [threading.Thread(target=worker) for _ in range(conc)]
for t in threads:
    t.start()
while any(t.is_alive() for t in threads):
    with lock:
        done = sum(1 for s, _ in status.values() if s == "accepted")
    with open(progress, "w") as f:
        f.write(str(done))
    time.sleep(0.2)
print(json.dumps({"status": status, "seconds": round(time.monotonic() - t0, 2)}))
"""

# Runs on the delivery host: how often each token's Message-ID is in the Maildir.
COUNTER = r"""
import json, os, re, sys
prefix, base = sys.argv[1], sys.argv[2]
rx = re.compile(rb"^Message-ID:\s*<(" + re.escape(prefix.encode()) + rb"-\d+)@", re.I | re.M)
counts = {}
for sub in ("new", "cur"):
    d = os.path.join(base, sub)
    for name in os.listdir(d) if os.path.isdir(d) else []:
        try:
            with open(os.path.join(d, name), "rb") as f:
                head = f.read(16384).split(b"\n\n", 1)[0]
        except FileNotFoundError:
            continue
        for m in rx.finditer(head):
            key = m.group(1).decode()
            counts[key] = counts.get(key, 0) + 1
print(json.dumps(counts))
"""


class Load:
    """A load run in the background on the client."""

    def __init__(self, fleet: Fleet, run: str, proc: subprocess.Popen[str], progress: str, n: int) -> None:
        self.fleet, self.run, self.proc, self.progress, self.n = fleet, run, proc, progress, n

    def accepted_so_far(self) -> int:
        out = self.fleet.client.run(f"cat {self.progress} 2>/dev/null").stdout.strip()
        return int(out) if out.isdigit() else 0

    def wait_accepted(self, count: int, timeout: float = 120) -> None:
        self.fleet.wait_for(lambda: self.accepted_so_far() >= count or self.proc.poll() is not None,
                            f"{count} messages accepted by the edges", timeout)

    def finish(self, timeout: float = 400) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, f"load generator failed: {err[-2000:]}"
        return json.loads(out)


class Fleet:
    def __init__(self) -> None:
        self.client_name = _names("client")[0]
        self.edges = _names("edge")
        self.delivery_name = _names("delivery")[0]
        self.client = testinfra.get_host(f"podman://{self.client_name}")
        self.delivery = testinfra.get_host(f"podman://{self.delivery_name}")
        self.results: list[dict[str, Any]] = []

    def host(self, name: str) -> Any:
        return testinfra.get_host(f"podman://{name}")

    @staticmethod
    def ip(name: str) -> str:
        return subprocess.run(["podman", "inspect", "--format", f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}', name],
                              capture_output=True, text=True, check=True).stdout.strip()

    @staticmethod
    def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0, every: float = 1.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(every)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")

    def masterless(self, name: str) -> bool:
        return self.host(name).run("test -e /run/systemd/generator/postfix-default.target").rc == 0

    def stop_instance(self, name: str) -> None:
        unit = "postfix-default.target" if self.masterless(name) else "postfix-default-master.service"
        res = self.host(name).run(f"systemctl stop {unit}")
        assert res.rc == 0, res.stderr

    def start_instance(self, name: str) -> None:
        unit = "postfix-default.target" if self.masterless(name) else "postfix-default-master.service"
        res = self.host(name).run(f"systemctl start {unit}")
        assert res.rc == 0, res.stderr

    def queue(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.host(name).run("postqueue -j").stdout.splitlines()]

    def queued(self, name: str) -> int:
        return len(self.queue(name))

    def queue_state(self) -> dict[str, Any]:
        """Per host: messages queued, by queue, and the first distinct reasons for their delay."""
        state: dict[str, Any] = {}
        for name in [*self.edges, self.delivery_name]:
            queues: dict[str, int] = {}
            reasons: list[str] = []
            for item in self.queue(name):
                queues[item["queue_name"]] = queues.get(item["queue_name"], 0) + 1
                for rcpt in item.get("recipients", []):
                    reason = rcpt.get("delay_reason", "")
                    if reason and reason not in reasons and len(reasons) < 2:
                        reasons.append(reason[:160])
            state[name.rsplit("-", 1)[-1]] = {"queued": queues, "reasons": reasons, "failed_units": self.failed_units(name)}
        return state

    def failed_units(self, name: str) -> str:
        return self.host(name).run("systemctl list-units --failed --plain --no-legend 'postfix*'").stdout.strip()

    def start_load(self, n: int, servers: list[str], *, concurrency: int = 8, rate: float = 50.0) -> Load:
        run = "f" + uuid.uuid4().hex[:10]
        progress = f"/tmp/{run}.progress"
        ips = ",".join(self.ip(s) for s in servers)
        proc = subprocess.Popen(
            ["podman", "exec", "-i", self.client_name, "python3", "-", run, str(n), str(concurrency), str(rate), ips,
             f"{USER}@{DOMAIN}", progress],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdin
        proc.stdin.write(LOADER)
        proc.stdin.close()
        proc.stdin = None  # communicate() must not flush the closed pipe
        return Load(self, run, proc, progress, n)

    def mailbox(self, run: str) -> dict[str, int]:
        res = subprocess.run(["podman", "exec", "-i", self.delivery_name, "python3", "-", run, MAILDIR],
                             input=COUNTER, capture_output=True, text=True, check=True)
        return json.loads(res.stdout)

    def settle(self, name: str, load: dict[str, Any], run: str, timeout: float = 240) -> dict[str, Any]:
        """Wait until every accepted message is in the mailbox (or the timeout), then count.

        On a timeout the summary's ``queues`` says where the missing mail is, for the assertion messages.
        """
        accepted = {t for t, (s, _unused) in load["status"].items() if s == "accepted"}
        seen: dict[str, int] = {}

        def arrived() -> bool:
            seen.clear()
            seen.update(self.mailbox(run))
            return accepted <= set(seen)

        deadline = time.monotonic() + timeout
        while not (complete := arrived()) and time.monotonic() < deadline:
            time.sleep(2)
        queues = {} if complete else self.queue_state()
        time.sleep(3)  # late duplicates would show up now
        seen = self.mailbox(run)
        states = [s for s, _unused in load["status"].values()]
        ambiguous = {t for t, (s, _unused) in load["status"].items() if s == "ambiguous"}
        summary = {
            "fault": name, "run": run, "sent": len(states), "accepted": len(accepted),
            "ambiguous": len(ambiguous), "ambiguous_delivered": len(ambiguous & set(seen)),
            "refused_or_failed": len(states) - len(accepted) - len(ambiguous),
            "delivered_exactly_once": sum(1 for t in accepted if seen.get(t) == 1),
            "lost": sorted(accepted - set(seen)),
            "duplicates": sorted(t for t, c in seen.items() if c > 1),
            "unexpected": sorted(set(seen) - accepted - ambiguous),
            "client_seconds": load["seconds"], "retries": sum(a - 1 for _unused, a in load["status"].values()),
            "queues": queues,
        }
        self.results.append(summary)
        print(f"\nfaults: {name}: sent {summary['sent']}, accepted {summary['accepted']}, delivered exactly once "
              f"{summary['delivered_exactly_once']}, lost {len(summary['lost'])}, duplicates {len(summary['duplicates'])}, "
              f"ambiguous {summary['ambiguous']} ({summary['ambiguous_delivered']} delivered), client retries {summary['retries']}")
        if queues:
            print(f"faults: {name}: not all accepted mail arrived within {timeout:.0f} s; queues: {queues}")
        return summary

    def power_cycle(self, name: str) -> None:
        """Stop and start a container as a reboot would, keeping its address (podman would hand out a new one)."""
        ip = self.ip(name)
        aliases = subprocess.run(["podman", "inspect", "--format", f'{{{{json (index .NetworkSettings.Networks "{NETWORK}").Aliases}}}}', name],
                                 capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run(["podman", "stop", "-t", "30", name], check=True, capture_output=True)
        subprocess.run(["podman", "network", "disconnect", NETWORK, name], check=True, capture_output=True)
        short_id = subprocess.run(["podman", "inspect", "--format", "{{.Id}}", name], capture_output=True, text=True, check=True).stdout[:12]
        # podman adds the short container id itself
        alias_args = [a for alias in (json.loads(aliases) or []) if alias != short_id for a in ("--alias", alias)]
        subprocess.run(["podman", "network", "connect", "--ip", ip, *alias_args, NETWORK, name], check=True, capture_output=True)
        subprocess.run(["podman", "start", name], check=True, capture_output=True)
        host = self.host(name)
        self.wait_for(lambda: host.run("systemctl is-system-running").stdout.strip() in ("running", "degraded"),
                      f"{name} to boot", 120)
        assert self.ip(name) == ip


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    f = Fleet()
    yield f
    if f.results:
        out = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        (out / f"faults-{stamp}.json").write_text(json.dumps(f.results, indent=2) + "\n", encoding="utf-8")
        print("\nfaults: fault                       sent accepted exactly-once lost dup ambiguous")
        for r in f.results:
            print(f"faults: {r['fault']:<27} {r['sent']:>4} {r['accepted']:>8} {r['delivered_exactly_once']:>12} "
                  f"{len(r['lost']):>4} {len(r['duplicates']):>3} {r['ambiguous']:>9}")
