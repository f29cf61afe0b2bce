# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attacks from the outside client: open-relay tricks, the delivery tier, unit exposure, smtpd and /home.

edge1 and delivery1 run master-less, edge2 runs master(8): every check covers both modes.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from molecule_podman_hosts import hosts_in_group

if TYPE_CHECKING:
    from conftest import Fleet

EDGES = [spec.split("://", 1)[1] for spec in hosts_in_group("edge")]
SERVERS = EDGES + [spec.split("://", 1)[1] for spec in hosts_in_group("delivery")]
DOMAIN = "faults.example"
# Ceiling for the unit that runs the internet-facing smtpd (systemd-analyze security scale, 0-10).
SMTPD_EXPOSURE_MAX = 1.5

# Runs on the client: one SMTP session per probe, raw commands (smtplib would unquote addresses).
PROBE = r"""
import json, smtplib, sys
host, probes = sys.argv[1], json.loads(sys.argv[2])
out = {}
for name, (sender, rcpt) in probes.items():
    try:
        with smtplib.SMTP(host, 25, timeout=30) as s:
            s.ehlo("outside.invalid")
            code, reply = s.docmd(f"MAIL FROM:<{sender}>")
            step = "MAIL"
            if code == 250:
                code, reply = s.docmd(f"RCPT TO:<{rcpt}>")
                step = "RCPT"
            out[name] = [code, step, reply.decode(errors="replace")]
    except ConnectionRefusedError as exc:
        out[name] = [0, "connect", f"refused: {exc}"]
    except smtplib.SMTPServerDisconnected as exc:
        out[name] = [0, "connect", f"disconnected: {exc}"]
print(json.dumps(out))
"""


def _probe(fleet: Fleet, server: str, probes: dict[str, tuple[str, str]]) -> dict[str, list[Any]]:
    res = subprocess.run(["podman", "exec", "-i", fleet.client_name, "python3", "-", fleet.ip(server), json.dumps(probes)],
                         input=PROBE, capture_output=True, text=True, check=True, timeout=300)
    return json.loads(res.stdout)


@pytest.mark.parametrize("edge", EDGES)
def test_edge_refuses_every_relay_trick(fleet: Fleet, edge: str) -> None:
    me = fleet.host(edge).check_output("postconf -h myhostname")
    probes = {
        "foreign to foreign": ("someone@foreign.example", "victim@elsewhere.example"),
        "null sender to foreign": ("", "victim@elsewhere.example"),
        "percent hack via the relayed domain": ("someone@foreign.example", f"victim%elsewhere.example@{DOMAIN}"),
        "percent hack via the edge host": ("someone@foreign.example", f"victim%elsewhere.example@{me}"),
        "bang path via the relayed domain": ("someone@foreign.example", f"elsewhere.example!victim@{DOMAIN}"),
        "bang path via the edge host": ("someone@foreign.example", f"elsewhere.example!victim@{me}"),
        "quoted local part via the relayed domain": ("someone@foreign.example", f'"victim@elsewhere.example"@{DOMAIN}'),
        "quoted local part via the edge host": ("someone@foreign.example", f'"victim@elsewhere.example"@{me}'),
        "null sender, quoted local part": ("", f'"victim@elsewhere.example"@{DOMAIN}'),
    }
    got = _probe(fleet, edge, probes)
    mode = "master-less" if fleet.masterless(edge) else "master"
    for name, (code, step, reply) in got.items():
        print(f"security: {edge} ({mode}) {name}: {step} {code} {reply[:90]}")
    accepted = {name: r for name, r in got.items() if not 500 <= r[0] < 600}
    assert not accepted, f"{edge} did not refuse with 5xx: {accepted}"
    # Control: the same client may send to the relayed domain, so the refusals are about the trick.
    ok = _probe(fleet, edge, {"control": ("someone@foreign.example", f"alice@{DOMAIN}")})["control"]
    assert ok[0] == 250, f"{edge} refused a legitimate recipient: {ok}"


def test_delivery_host_is_unreachable_from_outside(fleet: Fleet) -> None:
    delivery = fleet.delivery_name
    got = _probe(fleet, delivery, {
        "local recipient": ("someone@foreign.example", f"alice@{DOMAIN}"),
        "relay to foreign": ("someone@foreign.example", "victim@elsewhere.example"),
    })
    for name, (code, step, reply) in got.items():
        print(f"security: {delivery} from the client, {name}: {step} {code} {reply[:90]}")
        assert code == 0 or 500 <= code < 600, f"{delivery} answered {code} to the outside client ({name}): {reply}"
    # Nothing else reachable from outside besides SSH (the lab's management) and the refusing SMTP.
    listeners = fleet.delivery.check_output("ss -Hltn | awk '{print $4}'").split()
    public = sorted({a.rsplit(":", 1)[1] for a in listeners if not a.startswith(("127.", "[::1]"))})
    print(f"security: {delivery} TCP ports on non-loopback addresses: {public}")
    assert set(public) <= {"22", "25"}, f"{delivery} listens on {public}"


def test_generated_units_exposure(fleet: Fleet) -> None:
    rows = []
    script = ("for f in /run/systemd/generator/postfix-*.service /etc/systemd/system/postfix-*.service; do"
              " [ -f \"$f\" ] && [ ! -L \"$f\" ] || continue;"
              " s=$(systemd-analyze security --offline=yes \"$f\" 2>/dev/null"
              " | sed -n 's/.*Overall exposure level for .*: \\([0-9.]*\\).*/\\1/p');"
              " e=$(grep -m1 '^ExecStart=' \"$f\" | grep -o '/usr/lib/postfix/sbin/[a-z-]*' | head -1);"
              " echo \"$f ${s:-?} ${e##*/}\"; done")
    for name in SERVERS:
        mode = "master-less" if fleet.masterless(name) else "master"
        for line in fleet.host(name).check_output(script).splitlines():
            path, score, daemon = (line.split() + ["", "", ""])[:3]
            inet = fleet.host(name).run(f"grep -q -- '-t inet' {path}").rc == 0
            rows.append({"host": name.rsplit("-", 1)[-1], "mode": mode, "unit": Path(path).name, "dir": str(Path(path).parent),
                         "daemon": daemon, "inet": inet, "exposure": float(score) if re.match(r"^[\d.]+$", score) else None})
    _write("security-units", rows)
    for host in sorted({r["host"] for r in rows}):
        mine = sorted((r for r in rows if r["host"] == host), key=lambda r: r["exposure"] or 99)
        shown = ", ".join(f"{r['unit'].removeprefix('postfix-default-')} {r['exposure']}" for r in mine)
        print(f"security: {host} ({mine[0]['mode']}), {len(mine)} units: {shown}")
    assert rows, "no Postfix units found"
    assert all(r["exposure"] is not None for r in rows), [r for r in rows if r["exposure"] is None]
    smtpd = [r for r in rows if r["daemon"] == "smtpd" and r["inet"] and r["host"].startswith("edge")]
    assert smtpd, "no unit runs the edge's public smtpd directly (master-less edge expected)"
    over = [r for r in smtpd if r["exposure"] > SMTPD_EXPOSURE_MAX]
    assert not over, f"edge smtpd units above {SMTPD_EXPOSURE_MAX}: {over}"


@pytest.mark.parametrize("server", SERVERS)
def test_smtpd_cannot_read_home(fleet: Fleet, server: str) -> None:
    node = fleet.host(server)
    secret = "/home/mailfleet-probe/secret"
    node.run(f"install -d -m 755 /home/mailfleet-probe && echo readable > {secret} && chmod 644 {secret}")
    # Keep an SMTP session open so that an smtpd of the instance is certainly running.
    hold = subprocess.Popen(["podman", "exec", fleet.client_name, "python3", "-c",
                             "import socket, sys, time; s = socket.create_connection((sys.argv[1], 25), 10);"
                             " s.recv(512); time.sleep(15)", fleet.ip(server)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid = ""
        for _unused in range(20):
            pid = node.run("pgrep -n -x smtpd").stdout.strip()
            if pid:
                break
            time.sleep(0.5)
        assert pid, f"no smtpd runs on {server}"
        assert node.run(f"cat {secret}").stdout.strip() == "readable"  # control: the file is there
        # /proc/PID/root is the process's own view: its root (chroot) and its mount namespace.
        # Looking through it needs CAP_SYS_PTRACE, which only a privileged exec has.
        view = _privileged(server, f"readlink /proc/{pid}/root; echo --; ls -A /proc/{pid}/root | head -5; echo --;"
                                   f" ls -A /proc/{pid}/root/home; echo --; cat /proc/{pid}/root{secret}")
        root, top, home, seen = (view.split("--\n") + ["", "", "", ""])[:4]
        mode = "master-less" if fleet.masterless(server) else "master"
        print(f"security: {server} ({mode}) smtpd {pid}: root {root.strip()}, /home holds {home.split() or 'nothing'},"
              f" {secret}: {seen.strip() or 'not readable'}")
        assert top.split(), f"cannot look into the root of smtpd {pid}: the check would prove nothing"
        assert "readable" not in seen, f"smtpd {pid} on {server} can read {secret}"
    finally:
        hold.kill()
        hold.wait()
        node.run("rm -rf /home/mailfleet-probe")


def _privileged(name: str, command: str) -> str:
    res = subprocess.run(["podman", "exec", "--privileged", name, "sh", "-c", command + " 2>&1"],
                         capture_output=True, text=True, check=False, timeout=60)
    return res.stdout


def _write(name: str, data: Any) -> None:
    out = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    (out / f"{name}-{stamp}.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
