# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Differential conformance: does master-less mode run exactly what master(8) runs?

For every master.cf given, on one lab container (docs/conformance.md):

1. master(8): ``master -v -w`` prints every parsed entry (src/master/master_ent.c, print_master_ent):
   the daemon path and argv master would exec, the wakeup time and the process limit. The verbose master
   is stopped at once and the instance is started the stock way (the distribution's unit, which runs
   ``postfix start``); the live listeners are read with ss(8) and /proc, one message is sent with
   sendmail(1) and one over SMTP (when something listens on port 25) and both must reach /var/mail/root.
2. master-less: ``mailfleet.postfix.systemd_units mode=systemd``; the same facts are read from what systemd
   loaded (D-Bus: ExecStart argv after the bridge prefix, the sockets' Listen=, the timers) and from the
   running system; the same two messages; ``systemctl --failed``.
3. back to master(8) with ``mode=master``; ``systemctl --failed`` must be empty.

Per file: ``identical``, ``differences`` (each listed), ``refused-master`` (master(8) itself cannot run
it: it fails to start, or the daemon fails when master starts it) or ``refused`` (master-less refused
what master runs: a divergence). Results: OUT/result.json and OUT/report.md, rewritten after each file.

Normalisations (what differs by design; everything else must match byte for byte):

N1 ``-v``: ``master -v`` adds ``-v`` to every daemon's argv after ``-t TYPE``; it is removed (probe
   artefact, the stock master never adds it).
N2 ``-u``: left out where systemd starts the daemon as mail_owner (the unit's ``User=`` is mail_owner);
   kept, as master passes it, where the unit starts as root.
N3 ``-c``: left out in the module's default ``chroot: sandbox`` mode (chroot becomes sandboxing); kept
   with ``--chroot postfix``.
N4 Accept=yes services (one daemon per connection): ``-S`` after argv[0] (stand-alone mode), no ``-s N``
   (systemd passes the connection on stdin), and ``maxproc 0`` (no limit) becomes ``MaxConnections=1024``.
N5 pool workers (Accept=no) of single-server daemons: ``-o max_use=N`` right after master's own options
   unless master.cf sets max_use (a worker start costs a unit start, see the max_use_factor option).
N6 wakeup on a unix-dgram service: master(8) arms it but every wakeup fails (master_wakeup.c,
   EOPNOTSUPP); master-less has no timer. Both count as "no wakeup".
N7 master-less' own machinery is not master.cf's: its status socket and flow FIFO (in /run) and units
   whose command is not a Postfix daemon (master passes ``-t TYPE`` to every daemon) are left out; only
   endpoints under the queue directory and inet ports that were not open before Postfix started count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the escaped-fixture reader
import fixture_files  # type: ignore[import-not-found]  # noqa: E402  # pylint: disable=wrong-import-position

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "valid"
FIXTURES = HERE / "fixtures"
# The sample make test runs: fifo, pass, unix-dgram, postscreen, host:port, duplicates, non-UTF-8.
SAMPLE = ["fifo-pickup.cf", "postscreen-pass.cf", "postlog-dgram.cf", "hostport.cf", "duplicates.cf",
          "latin1-comment.cf", "039-KMIYOL15931-etc.cf", "025-mailcow-mailcow-dockerized.cf"]
PASSING = ("identical", "refused-master")
PROBE = "/root/conformance-probe.py"
BASELINE = "/root/conformance-baseline.json"
QUEUE = "/var/spool/postfix"
MAIL_OWNER = "postfix"
CONDWAKE = 1 << 2  # src/master/master.h MASTER_FLAG_CONDWAKE
UNLIMITED_CONNECTIONS = 1024
DELIVERY_TIMEOUT = 20
# Parameters some master.cf files refer to with $name in -o (submission/smtps): defined so they load.
MAIN_CF = {
    "mua_client_restrictions": "", "mua_helo_restrictions": "", "mua_sender_restrictions": "",
    "mua_relay_restrictions": "permit_mynetworks, reject", "mua_recipient_restrictions": "permit_mynetworks, reject",
    "postscreen_dnsbl_sites": "", "inet_protocols": "all", "inet_interfaces": "all",
}


class Host:
    """The lab container, reached with podman exec."""

    def __init__(self, name: str) -> None:
        self.name = name

    def sh(self, script: str, stdin: bytes = b"", check: bool = False, timeout: int = 120) -> subprocess.CompletedProcess:
        out = subprocess.run(["podman", "exec", "-i", self.name, "bash", "-c", script], input=stdin,
                             capture_output=True, timeout=timeout, check=False)
        if check and out.returncode:
            raise RuntimeError(f"{script!r} failed ({out.returncode}): {out.stderr.decode(errors='replace')}")
        return out

    def text(self, script: str, **kw: Any) -> str:
        return self.sh(script, **kw).stdout.decode(errors="replace")

    def probe(self, *args: str) -> Any:
        out = self.sh(" ".join(["python3", PROBE, *map(shlex.quote, args)]), check=True)
        return json.loads(out.stdout)


# --------------------------------------------------------------------------- host steps


def master_unit(host: Host) -> str:
    """The distribution's unit that runs the primary instance's master (Debian 11/12 vs 13)."""
    version = host.text(". /etc/os-release && echo ${VERSION_ID%%.*}").strip()
    return "postfix@-.service" if version.isdigit() and int(version) <= 12 else "postfix.service"


def setup(host: Host) -> None:
    """Probe on the host, journald without rate limit (master -v is chatty), main.cf, baseline."""
    host.sh(f"cat > {PROBE}", stdin=(HERE / "probe.py").read_bytes(), check=True)
    host.sh("mkdir -p /etc/systemd/journald.conf.d && printf '[Journal]\\nRateLimitBurst=0\\n' "
            "> /etc/systemd/journald.conf.d/conformance.conf && systemctl restart systemd-journald", check=True)
    switch(host, "master")  # an interrupted run may have left the host master-less
    host.sh("postconf -e " + " ".join(shlex.quote(f"{k}={v}") for k, v in MAIN_CF.items()), check=True)
    stop_master(host)
    host.sh(f"python3 {PROBE} endpoints {QUEUE} > {BASELINE}", check=True)


def stop_master(host: Host) -> None:
    host.sh("systemctl stop postfix@-.service postfix.service 2>/dev/null; postfix stop >/dev/null 2>&1; "
            "for i in $(seq 100); do pgrep -x master >/dev/null || exit 0; sleep 0.1; done; exit 1", check=True)


ANSI = re.compile(r"\x1b\[[0-9;]*m")
CHROOT = "sandbox"  # the module's chroot option (--chroot); N3 applies to sandbox only


def switch(host: Host, mode: str) -> dict:
    """One ad-hoc module call: the task's result (failed, msg, warnings, services)."""
    env = dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal",
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_HOST_KEY_CHECKING="0",
               ANSIBLE_DEPRECATION_WARNINGS="0")  # molecule forces colours on
    ansible = Path(sys.executable).with_name("ansible")
    argv = [str(ansible) if ansible.exists() else "ansible", "all", "-i", f"{host.name},", "-c", "containers.podman.podman",
            "-e", "ansible_python_interpreter=/usr/bin/python3",
            "-m", "mailfleet.postfix.systemd_units", "-a", f"mode={mode} chroot={CHROOT}"]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=600)
    out.stdout, out.stderr = ANSI.sub("", out.stdout), ANSI.sub("", out.stderr)
    try:  # minimal callback: "HOST | STATUS => {json}"
        result = json.loads(out.stdout[out.stdout.index(" => ") + 4:])
    except ValueError:
        raise RuntimeError(f"unreadable result of systemd_units mode={mode} (ansible exit {out.returncode}): "
                           f"{out.stdout[-1000:]}{out.stderr[-1000:]}") from None
    result["rc"] = out.returncode
    # The callback prints warnings on stderr, not in the result.
    result["warnings"] = [line[len("[WARNING]: "):] for line in out.stderr.splitlines()
                          if line.startswith("[WARNING]: ")]
    return result


def deliver(host: Host, smtp: Optional[str]) -> dict:
    """sendmail and (when given) SMTP to root; wait until what was accepted reaches /var/mail/root."""
    tag = uuid.uuid4().hex[:12]
    tokens = {"sendmail": f"conf-sendmail-{tag}"}
    script = f"wanted={tokens['sendmail']}; printf 'Subject: %s\\n\\nbody\\n' $wanted | timeout 20 sendmail root; "
    if smtp:
        tokens["smtp"] = f"conf-smtp-{tag}"
        server, port = smtp.rsplit(":", 1)
        # Only a message the server accepted is waited for: a file without (say) proxymap never answers.
        script += (f"timeout 30 swaks --silent 2 --timeout 10 --server {shlex.quote(server.strip('[]'))} "
                   f"--port {port} --from probe@localhost --to root@localhost "
                   f"--header 'Subject: {tokens['smtp']}' >/dev/null 2>&1 && wanted=\"$wanted {tokens['smtp']}\"; ")
    script += (f"for i in $(seq {DELIVERY_TIMEOUT * 5}); do ok=1; for t in $wanted; do "
               "grep -qF -- $t /var/mail/root 2>/dev/null || ok=0; done; [ $ok = 1 ] && break; sleep 0.2; done; "
               f"for t in {' '.join(tokens.values())}; do grep -qF -- $t /var/mail/root 2>/dev/null && echo $t; done")
    arrived = set(host.text(script, timeout=120).split())
    result: dict[str, Any] = {k: v in arrived for k, v in tokens.items()}
    result.setdefault("smtp", None)
    result["smtp_server"] = smtp
    return result


def smtp_target(endpoints: dict) -> Optional[str]:
    """Where to send the SMTP message: a listener on port 25, loopback where the wildcard is bound."""
    found = [e for e in endpoints["inet"] if e[0] == "tcp" and e[3] == "25"]
    for _proto, _family, addr, _port in sorted(found, key=lambda e: e[1]):
        return {"0.0.0.0": "127.0.0.1", "*": "127.0.0.1", "[::]": "[::1]"}.get(addr, addr) + ":25"
    return None


# --------------------------------------------------------------------------- the two sides


def service_key(argv: list[str]) -> tuple[str, str]:
    """(service name, type) from master's own argv head: -n NAME (else argv[0]) and -t TYPE."""
    name, kind = os.path.basename(argv[0]), ""
    for pos, arg in enumerate(argv[:-1]):
        if arg == "-t":
            kind = argv[pos + 1]
            break
        if arg == "-n":
            name = argv[pos + 1]
    return name, kind


def master_side(dump: dict) -> dict:
    services = {}
    for ent in dump["entries"]:
        argv = list(ent["argv"])
        # N1: drop the -v that master -v inserted right after -t TYPE (and -d, never used here).
        for pos in range(len(argv) - 1):
            if argv[pos] == "-t":
                at = pos + 2 + (argv[pos + 2:pos + 3] == ["-d"])
                if argv[at:at + 1] == ["-v"]:
                    del argv[at]
                break
        key = "/".join(service_key(argv))
        wakeup = ent.get("wakeup", 0) if ent.get("type") != "unix-dgram" else 0  # N6
        services[key] = {"path": ent.get("path"), "argv": argv, "maxproc": ent.get("max_proc"),
                         "wakeup": wakeup, "conditional": bool(ent.get("flags", 0) & CONDWAKE) and wakeup > 0,
                         "listen_fd_count": ent.get("listen_fd_count"), "endpoint": ent.get("name"),
                         "type": ent.get("type")}
    return services


def _daemon_argv(exec_start: list) -> tuple[str, list[str], dict]:
    """Path and argv of the Postfix daemon, and the bridge's options, from systemd's ExecStart."""
    if not exec_start:
        return "", [], {}
    path, argv = exec_start[0][0], list(exec_start[0][1])
    if "run" in argv and "--" in argv and os.path.basename(path).startswith("python"):
        cut = argv.index("--")
        bridge = argv[:cut]
        opts = {bridge[i]: bridge[i + 1] for i in range(len(bridge) - 1) if bridge[i].startswith("--")}
        return argv[cut + 1], argv[cut + 2:], opts
    return path, argv, {}


def systemd_expand(argv: list[str]) -> list[str]:
    """What systemd execs from a D-Bus ExecStart argv: ``$$`` is ``$``; ``${NAME}`` and a word ``$NAME`` are
    environment expansions (shown as such, so an unescaped ``$`` in a unit shows up as a difference)."""
    out = []
    for arg in argv:
        if re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", arg):
            out.append(f"<systemd expands {arg}>")
            continue
        out.append(re.sub(r"\$\$|\$\{[A-Za-z_][A-Za-z0-9_]*\}",
                          lambda m: "$" if m.group(0) == "$$" else f"<systemd expands {m.group(0)}>", arg))
    return out


def masterless_side(units: dict) -> dict:
    services = {}
    for base, svc in units["services"].items():
        path, argv, bridge = _daemon_argv(svc.get("ExecStart") or [])
        argv = systemd_expand(argv)
        if "-t" not in argv:
            continue  # N7: the mode's own units (status holder, stubs); master(8) passes -t to every daemon
        sock = units["sockets"].get(base, {})
        timer = units["timers"].get(base + "-wakeup", {})
        seconds = next((t[1] // 1_000_000 for t in timer.get("TimersMonotonic", []) if t[0] == "OnUnitActiveUSec"), 0)
        accept = bool(sock.get("Accept"))
        services["/".join(service_key(argv))] = {
            "unit": units["names"].get(base, base), "path": path, "argv": argv, "user": svc.get("User", ""),
            "accept": accept, "maxproc": sock.get("MaxConnections") if accept else _int(bridge.get("--maxproc")),
            "listen": [list(x) for x in sock.get("Listen", [])], "socket_state": sock.get("SubState", ""),
            "wakeup": seconds, "conditional": bool(timer.get("service", {}).get("ExecCondition")),
            "wakeup_exec": [list(x[1]) for x in timer.get("service", {}).get("ExecStart", [])],
            "timer_state": timer.get("ActiveState", "")}
    return services


def _int(text: Optional[str]) -> Optional[int]:
    return int(text) if text and text.isdigit() else None


def expected_argv(master: dict, ml: dict) -> list[str]:
    """master's argv as master-less must run it (N2-N4)."""
    argv, out, pos = master["argv"], [master["argv"][0]], 1
    if ml["accept"]:
        out.append("-S")
    head_done = False
    while pos < len(argv):
        arg = argv[pos]
        if head_done:
            out.append(arg)
        elif arg in ("-n", "-t"):
            out += argv[pos:pos + 2]
            pos += 1
        elif arg == "-s":
            if not ml["accept"]:
                out += argv[pos:pos + 2]
            pos += 1
            head_done = True
        elif arg in ("-l", "-z", "-d"):
            out.append(arg)
        elif arg == "-u":
            if ml["user"] != MAIL_OWNER:
                out.append(arg)
        elif arg == "-c":
            if CHROOT != "sandbox":  # N3
                out.append(arg)
        elif arg == "-o" and argv[pos + 1:pos + 2] == ["stress="]:
            out += argv[pos:pos + 2]
            pos += 1
        else:
            head_done = True
            out.append(arg)
        pos += 1
    return out


def actual_argv(master: dict, ml: dict) -> list[str]:
    """master-less' argv minus its max_use option where N5 allows it."""
    argv = list(ml["argv"])
    if ml["accept"] or any(a.startswith("max_use=") for a in master["argv"]):
        return argv
    for pos in range(len(argv) - 1):
        if argv[pos] == "-o" and re.fullmatch(r"max_use=\d+", argv[pos + 1]):
            del argv[pos:pos + 2]
            break
    return argv


def expected_listen(master: dict) -> list[list[str]]:
    kind = {"fifo": "FIFO", "unix-dgram": "Datagram"}.get(master["type"], "Stream")
    if master["type"] in ("unix", "fifo", "unix-dgram", "pass"):
        return [[kind, os.path.join(QUEUE, master["endpoint"])]]
    return []


def compare(master: dict, ml: dict, m_live: dict, s_live: dict) -> list[str]:
    diffs = []
    for key in sorted(set(master) - set(ml)):
        diffs.append(f"service {key}: master(8) runs it ({shlex.join(master[key]['argv'])}), master-less does not")
    for key in sorted(set(ml) - set(master)):
        diffs.append(f"service {key}: master-less runs it ({shlex.join(ml[key]['argv'])}), master(8) does not")
    for key in sorted(set(master) & set(ml)):
        m, s = master[key], ml[key]
        if m["path"] != s["path"]:
            diffs.append(f"service {key}: daemon {m['path']} under master(8), {s['path']} master-less")
        want, got = expected_argv(m, s), actual_argv(m, s)
        if want != got:
            diffs.append(f"service {key}: argv differs: master(8) {shlex.join(m['argv'])} -> expected "
                         f"{shlex.join(want)}, master-less runs {shlex.join(s['argv'])}")
        maxproc = m["maxproc"]
        if s["accept"] and maxproc == 0:
            maxproc = UNLIMITED_CONNECTIONS  # N4
        if s["maxproc"] != maxproc:
            diffs.append(f"service {key}: process limit {m['maxproc']} under master(8), {s['maxproc']} master-less")
        if (m["wakeup"], m["conditional"]) != (s["wakeup"], s["conditional"]):
            diffs.append(f"service {key}: wakeup {m['wakeup']}{'?' if m['conditional'] else ''} under master(8), "
                         f"{s['wakeup'] or 'none'}{'?' if s['conditional'] else ''} master-less")
        if s["wakeup"] and s["timer_state"] != "active":
            diffs.append(f"service {key}: wakeup timer is {s['timer_state'] or 'missing'}")
        listen = expected_listen(m)
        if listen and sorted(listen) != sorted(s["listen"]):
            diffs.append(f"service {key}: listener {listen} under master(8), {s['listen']} master-less")
        if m["type"] == "inet" and m["listen_fd_count"] != len(s["listen"]):
            diffs.append(f"service {key}: {m['listen_fd_count']} inet listener(s) under master(8), "
                         f"{s['listen']} master-less")
        if s["socket_state"] not in ("listening", "running"):
            diffs.append(f"service {key}: socket unit {s['unit']}.socket is {s['socket_state'] or 'missing'}")
    for kind in ("inet", "unix"):
        m_set = {tuple(e) for e in m_live[kind]}
        s_set = {tuple(e) for e in s_live[kind]}
        for e in sorted(m_set - s_set):
            diffs.append(f"listener {' '.join(e)}: open under master(8), not master-less")
        for e in sorted(s_set - m_set):
            diffs.append(f"listener {' '.join(e)}: open master-less, not under master(8)")
    return diffs


# --------------------------------------------------------------------------- one file


def logical_lines(data: bytes) -> dict[int, str]:
    """line number -> 'service/type' of each master.cf entry (for naming what a refusal points at)."""
    out, current = {}, None
    for number, raw in enumerate(data.split(b"\n"), 1):
        line = raw.decode("latin-1")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and current:
            continue
        fields = line.split()
        current = f"{fields[0]}/{fields[1]}" if len(fields) > 1 else fields[0]
        out[number] = current
    return out


def master_failures(host: Host, cursor: str, live: dict) -> list[str]:
    """Touch every listener master opened and collect the daemons that fail (master reasons)."""
    script = []
    for path, kind in live["unix"]:
        if kind == "fifo":
            script.append(f"timeout 2 sh -c 'printf W > {shlex.quote(path)}' 2>/dev/null")
        elif kind == "stream":
            script.append(f"timeout 2 python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); "
                          f"s.connect(sys.argv[1]); s.recv(1)' {shlex.quote(path)} 2>/dev/null")
    script.append("sleep 2")
    host.sh("; ".join(script) or "true", timeout=300)
    log = host.text(f"journalctl --no-pager -o cat --after-cursor={shlex.quote(cursor)} "
                    "| grep -E 'fatal:|bad command startup|exit status [1-9]|killed by signal' | head -20")
    return [line for line in log.splitlines() if line.strip()]


def run_file(host: Host, path: Path, unit: str) -> dict:
    data = fixture_files.read(path)
    res: dict[str, Any] = {"file": path.name, "source": str(path.parent.name), "differences": [], "notes": []}
    t0 = time.monotonic()
    host.sh("systemctl reset-failed")
    stop_master(host)
    host.sh("postsuper -d ALL >/dev/null 2>&1; : > /var/mail/root; cat > /etc/postfix/master.cf", stdin=data,
            check=True)
    # 1. master(8): its own parse, then the stock start.
    cursor = host.text(f"python3 {PROBE} cursor").strip()
    verbose = host.sh('"$(postconf -h daemon_directory)/master" -v -w')
    dump = host.probe("master-dump", cursor)
    stop_master(host)
    res["master_messages"] = dump["messages"]
    if verbose.returncode:
        res.update(status="refused-master", reason="master(8) fails to start: " + "; ".join(dump["messages"][-3:]))
        return finish(res, t0)
    start = host.sh(f"systemctl start {unit}")
    if start.returncode:
        log = host.text(f"journalctl --no-pager -o cat -n 5 -u {unit}")
        res.update(status="refused-master", reason=f"{unit} (postfix start) fails: {log.strip()}")
        return finish(res, t0)
    master = master_side(dump)
    m_live = host.probe("endpoints", QUEUE, BASELINE)
    smtp = smtp_target(m_live)
    res["master"] = {"services": master, "endpoints": m_live, "delivery": deliver(host, smtp)}
    res["timing"] = {"master": round(time.monotonic() - t0, 1)}
    # 2. master-less.
    cursor = host.text(f"python3 {PROBE} cursor").strip()
    on = switch(host, "systemd")
    res["switch_systemd"] = {k: on.get(k) for k in ("failed", "msg", "warnings", "rc")}
    if on.get("failed"):
        msg = str(on.get("msg", ""))
        lines = logical_lines(data)
        named = sorted({lines[int(n)] for n in re.findall(r"line (\d+)", msg) if int(n) in lines})
        fails = master_failures(host, cursor, m_live) if host.sh("pgrep -x master").returncode == 0 else []
        ours = [f for f in fails if any(n.split("/")[0] in f for n in named)]
        if ours:
            res.update(status="refused-master", reason=f"master-less refuses ({msg}); master(8) fails too: {ours}")
        else:
            res.update(status="refused", reason=f"master-less refuses what master(8) runs: {msg}",
                       entries=named)
        back = switch(host, "master")
        res["notes"] += [f"switch back to master: {back.get('msg')}"] if back.get("failed") else []
        return finish(res, t0)
    res["timing"]["switch"] = round(time.monotonic() - t0 - res["timing"]["master"], 1)
    units = host.probe("units", "default")
    s_live = host.probe("endpoints", QUEUE, BASELINE)
    ml = masterless_side(units)
    res["masterless"] = {"services": ml, "endpoints": s_live, "delivery": deliver(host, smtp),
                         "failed": units["failed"]}
    res["differences"] = compare(master, ml, m_live, s_live)
    for unit_name in units["failed"]:
        res["differences"].append(f"failed unit master-less: {unit_name}")
    for kind in ("sendmail", "smtp"):
        m_ok, s_ok = res["master"]["delivery"][kind], res["masterless"]["delivery"][kind]
        if m_ok != s_ok:
            res["differences"].append(f"delivery by {kind}: {'arrives' if m_ok else 'does not arrive'} under "
                                      f"master(8), {'arrives' if s_ok else 'does not arrive'} master-less")
        elif m_ok is False:
            res["notes"].append(f"delivery by {kind} fails under master(8) too (the file's own services or routing)")
    if smtp is None:
        res["notes"].append("no SMTP listener on port 25: SMTP delivery not tried")
    res["notes"] += [f"systemd_units warns: {w}" for w in on.get("warnings") or []]
    # master(8) warns about a duplicate entry and keeps the last: master-less must say so too.
    for message in dump["messages"]:
        dup = re.search(r'duplicate master.cf entry for service "([^"]*)"', message)
        if dup and not any("duplicate" in w and dup.group(1) in w for w in on.get("warnings") or []):
            res["differences"].append(f"master(8) warns '{message}', master-less does not")
    # 3. back to master(8).
    res["timing"]["masterless"] = round(time.monotonic() - t0 - sum(res["timing"].values()), 1)
    back = switch(host, "master")
    if back.get("failed"):
        res["differences"].append(f"switch back to master fails: {back.get('msg')}")
    failed = [line.split()[0] for line in host.text("systemctl list-units --failed --all --plain --no-legend")
              .splitlines() if line.strip()]
    res["failed_after_switch_back"] = failed
    res["differences"] += [f"failed unit after switching back to master: {u}" for u in failed]
    if host.sh("pgrep -x master").returncode:
        res["differences"].append("no master(8) runs after switching back")
    res["status"] = "differences" if res["differences"] else "identical"
    return finish(res, t0)


def finish(res: dict, t0: float) -> dict:
    res["seconds"] = round(time.monotonic() - t0, 1)
    return res


# --------------------------------------------------------------------------- report


def write(out: Path, results: list[dict], files: list[Path], started: float, done: bool) -> None:
    counts = {s: sum(1 for r in results if r["status"] == s)
              for s in ("identical", "differences", "refused-master", "refused", "error")}
    summary = {"files": len(files), "done": len(results), "finished": done, "counts": counts,
               "seconds": round(time.monotonic() - started, 1),
               "ok": done and all(r["status"] in PASSING for r in results)}
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps({"summary": summary, "results": results}, indent=1, default=str), encoding="utf-8")
    tmp.replace(out / "result.json")
    lines = ["# Conformance: master-less vs master(8)", "",
             f"{len(results)} of {len(files)} files{'' if done else ' (running)'}, "
             f"{summary['seconds']} s: " + ", ".join(f"{n} {s}" for s, n in counts.items()), "",
             "| file | result | s | differences / reason |", "|---|---|---|---|"]
    for r in results:
        what = r.get("reason") or f"{len(r['differences'])} difference(s)"
        lines.append(f"| {r['file']} | {r['status']} | {r['seconds']} | {what.replace('|', '/').replace(chr(10), ' ')[:300]} |")
    for r in results:
        if r["status"] == "identical" and not r["notes"]:
            continue
        lines += ["", f"## {r['file']}: {r['status']}", ""]
        if r.get("reason"):
            lines.append(f"- reason: {r['reason']}")
        lines += [f"- {d}" for d in r["differences"]]
        lines += [f"- note: {n}" for n in r["notes"]]
        lines += [f"- master(8) logs: {m}" for m in r.get("master_messages", []) if "duplicate" in m]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def select(args: argparse.Namespace) -> list[Path]:
    corpus = Path(args.corpus)
    pool = fixture_files.paths(FIXTURES) + (sorted(corpus.glob("*.cf")) if corpus.is_dir() else [])
    if args.files:
        return [p for p in pool if p.name in args.files or str(p) in args.files] + \
            [Path(f) for f in args.files if Path(f).is_file() and Path(f).resolve() not in {q.resolve() for q in pool}]
    if args.sample:
        return [p for p in pool if p.name in SAMPLE]
    return pool


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--container", required=True)
    parser.add_argument("--out", default=str(ROOT / "build" / "conformance"))
    parser.add_argument("--corpus", default=os.environ.get("CONFORMANCE_CORPUS", str(CORPUS)))
    parser.add_argument("--sample", action="store_true", default=os.environ.get("CONFORMANCE_SAMPLE") == "1",
                        help="only the sample make test runs (CONFORMANCE_SAMPLE=1)")
    parser.add_argument("--chroot", choices=("sandbox", "postfix"), default="sandbox",
                        help="systemd_units' chroot option (default: the module's default, sandbox)")
    parser.add_argument("files", nargs="*", help="file names (fixtures, corpus) or paths; default: all")
    args = parser.parse_args(argv)
    global CHROOT  # noqa: PLW0603 one run, one mode
    CHROOT = args.chroot
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = select(args)
    host = Host(args.container)
    started = time.monotonic()
    write(out, [], files, started, False)  # no stale result from an earlier run
    setup(host)
    unit = master_unit(host)
    results: list[dict] = []
    for path in files:
        try:
            res = run_file(host, path, unit)
        except Exception as exc:  # noqa: BLE001 one broken file must not hide the others' results
            res = {"file": path.name, "status": "error", "reason": f"{type(exc).__name__}: {exc}",
                   "differences": [], "notes": [], "seconds": 0}
            try:
                switch(host, "master")
            except Exception:  # noqa: BLE001 the next file reports it
                pass
        results.append(res)
        print(f"conformance: {res['file']}: {res['status']} ({res['seconds']} s)"
              + "".join(f"\n  - {d}" for d in res["differences"]) + (f"\n  - {res['reason']}" if res.get("reason") else ""),
              flush=True)
        write(out, results, files, started, False)
    write(out, results, files, started, True)
    print(f"conformance: {len(files)} files in {round(time.monotonic() - started)} s; report {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
