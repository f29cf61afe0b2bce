# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Master-less Postfix: mail flows through systemd units made from master.cf, with no master(8).

Tests run in file order and share the two hosts; every test (except the mode switches at the end)
checks that no master process runs before and after it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from typing import Any, Callable, Iterator, Optional

import pytest
import testinfra

MAIL = "mailfleet-mol-systemd"
SINK = "mailfleet-mol-systemd-sink"
TARGET = "postfix-default.target"
HOLDER = "postfix-default-holder"
BRIDGE = "/usr/bin/python3 -I -S /usr/libexec/mailfleet-postfix/bridge"
HOLDER_SOCK = "/run/mailfleet-postfix/default/holder.sock"


@pytest.fixture(scope="module")
def mail() -> Any:
    return testinfra.get_host(f"podman://{MAIL}")


@pytest.fixture(scope="module")
def sink() -> Any:
    return testinfra.get_host(f"podman://{SINK}")


@pytest.fixture(autouse=True)
def no_master(request: pytest.FixtureRequest, mail: Any) -> Iterator[None]:
    """pgrep -x master stays empty throughout (the mode-switch tests opt out)."""
    check = not request.node.name.startswith("test_switch")
    if check:
        assert mail.run("pgrep -x master").stdout == "", "a master(8) process runs"
    yield
    if check:
        assert mail.run("pgrep -x master").stdout == "", "a master(8) process runs"


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0, explain: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{explain()}")


def mail_state(host: Any) -> str:
    """What a failed delivery leaves to read: the queue, failed units and the mail log."""
    return host.run("postqueue -p | tail -n 20; systemctl list-units --failed --plain --no-legend; "
                    "journalctl -b --no-pager -n 40 -o short-precise -t postfix/smtp -t postfix/qmgr "
                    "-t postfix/smtpd -t postfix/cleanup").stdout


def token() -> str:
    return uuid.uuid4().hex[:12]


def swaks(host: Any, to: str, subject: str, server: str = "127.0.0.1:25", *extra: str) -> Any:
    return host.run(f"swaks --silent 2 --server {server} --from probe@local.test --to {to} "
                    f"--header 'Subject: {subject}' " + " ".join(extra))


def in_mailbox(host: Any, user: str, needle: str) -> Callable[[], bool]:
    return lambda: host.run(f"grep -qF -- '{needle}' /var/mail/{user}").rc == 0


def unit_prop(host: Any, unit: str, prop: str) -> str:
    return host.run(f"systemctl show -p {prop} --value -- '{unit}'").stdout.strip()


def holder_status(host: Any) -> dict[str, Any]:
    out = host.run(f"{BRIDGE} status --holder {HOLDER_SOCK}")
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)


def container_ip(name: str) -> str:
    out = subprocess.run(["podman", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                          name], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def smtp_banner(addr: str, port: int = 25, timeout: float = 20.0) -> str:
    with socket.create_connection((addr, port), timeout=timeout) as conn:
        data = conn.recv(1024).decode(errors="replace")
        conn.sendall(b"QUIT\r\n")
        return data


# --------------------------------------------------------------------------- the unit set


def test_instance_runs_from_generated_units(mail: Any) -> None:
    assert mail.service(TARGET).is_running
    assert mail.service(f"{HOLDER}.service").is_running
    assert mail.file("/run/systemd/generator/postfix-default-smtp-inet.socket").exists
    # The unit that runs the primary's master: Debian 11 and 12 postfix@-.service, Debian 13 postfix.service.
    release = int(mail.system_info.release.split(".")[0])
    distribution_unit = "postfix@-.service" if release <= 12 else "postfix.service"
    assert mail.file(f"/run/systemd/generator.early/{distribution_unit}").linked_to == "/dev/null"
    assert mail.run(f"systemctl show -p LoadState --value {distribution_unit}").stdout.strip() == "masked"
    failed = mail.run("systemctl list-units --failed --plain --no-legend 'postfix*'").stdout.strip()
    assert failed == ""
    qmgr = mail.run("ps -o user=,args= -C qmgr").stdout.split()
    assert qmgr[:2] == ["postfix", "qmgr"], "qmgr runs as mail_owner from its own unit"


def test_smtp_to_local_mailbox(mail: Any) -> None:
    subject = f"smtp-{token()}"
    assert swaks(mail, "root@localhost", subject).rc == 0
    wait_for(in_mailbox(mail, "root", subject), "SMTP mail in /var/mail/root")


def test_sendmail_pickup_to_mailbox(mail: Any) -> None:
    subject = f"pickup-{token()}"
    assert mail.run(f"printf 'Subject: {subject}\\n\\nbody\\n' | sendmail root").rc == 0
    wait_for(in_mailbox(mail, "root", subject), "sendmail mail in /var/mail/root")


def test_postqueue_flush_and_mailq(mail: Any) -> None:
    flush = mail.run("postqueue -f")
    assert flush.rc == 0, flush.stderr
    assert mail.run("postqueue -p").rc == 0


def test_bounce_for_unknown_local_user(mail: Any) -> None:
    subject = f"bounce-{token()}"
    mail.run(f"printf 'Subject: {subject}\\n\\nbody\\n' | sendmail -f root@localhost nosuchuser-{subject}@localhost")
    wait_for(lambda: mail.run(f"grep -q 'Undelivered Mail Returned to Sender' /var/mail/root && "
                              f"grep -qF '{subject}' /var/mail/root").rc == 0, "the bounce to root")


def test_relay_to_smtp_sink(mail: Any, sink: Any) -> None:
    subject = f"relay-{token()}"
    assert swaks(mail, "someone@sink.test", subject).rc == 0
    wait_for(lambda: sink.run(f"grep -qF '{subject}' /var/tmp/sink.mbox").rc == 0, "the message at smtp-sink",
             explain=lambda: mail_state(mail) + sink.run("systemctl status --no-pager -n 10 smtp-sink").stdout)


def test_postscreen_passes_clients_to_smtpd(mail: Any) -> None:
    subject = f"postscreen-{token()}"
    assert swaks(mail, "root@localhost", subject, "127.0.0.1:2526").rc == 0
    wait_for(in_mailbox(mail, "root", subject), "mail through postscreen")
    assert mail.service("postfix-default-smtpd-pass@1.service").is_running or \
        "postfix-default-smtpd-pass" in holder_status(mail)


def test_starttls(mail: Any) -> None:
    out = mail.run("posttls-finger -c -l may '[127.0.0.1]:25'")
    assert "TLS connection established" in out.stdout + out.stderr


def test_wakeup_timers(mail: Any) -> None:
    timer = "postfix-default-pickup-unix-wakeup.timer"
    assert unit_prop(mail, timer, "ActiveState") == "active"
    assert unit_prop(mail, timer, "LastTriggerUSec") not in ("", "n/a", "0")
    assert unit_prop(mail, "postfix-default-pickup-unix-wakeup.service", "Result") == "success"
    # tlsmgr '1000?': waits for first use; smtpd's TLS has used it by now, so the wakeup runs.
    assert mail.file("/run/mailfleet-postfix/default/used/postfix-default-tlsmgr-unix").exists
    service = "postfix-default-tlsmgr-unix-wakeup.service"
    assert mail.run(f"systemctl start {service}").rc == 0
    assert unit_prop(mail, service, "ExecMainStatus") == "0"
    assert unit_prop(mail, service, "Result") == "success"


def test_sandbox_of_smtpd_is_enforced(mail: Any) -> None:
    pid = unit_prop(mail, "postfix-default-smtp-inet@1.service", "MainPID")
    if pid in ("", "0"):
        smtp_banner(container_ip(MAIL))
        wait_for(lambda: unit_prop(mail, "postfix-default-smtp-inet@1.service", "MainPID") not in ("", "0"),
                 "smtpd worker 1")
        pid = unit_prop(mail, "postfix-default-smtp-inet@1.service", "MainPID")
    status = mail.run(f"cat /proc/{pid}/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["CapBnd"].strip() == "0000000000000000"
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Uid"].split()[0] == mail.user("postfix").uid.__str__()
    out = subprocess.run(["podman", "exec", "--privileged", MAIL, "nsenter", "-t", pid, "-m",
                          "touch", "/etc/mailfleet-probe"], capture_output=True, text=True, check=False)
    assert out.returncode != 0 and "Read-only file system" in out.stderr


# A memcache server (the text protocol dict_memcache speaks: get, set, delete) that prints what it is
# asked; "ask PORT LINE" sends it one line as a client and prints the reply.
MEMCACHE = r"""
import socket, socketserver, sys
STORE = {}
class Memcache(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            words = line.decode().split()
            print(*words, flush=True)
            if words[:1] == ["get"]:
                value = STORE.get(words[1])
                found = b"VALUE %s 0 %d\r\n%s\r\n" % (words[1].encode(), len(value), value) if value else b""
                self.wfile.write(found + b"END\r\n")
            elif words[:1] == ["set"]:
                STORE[words[1]] = self.rfile.read(int(words[4]) + 2)[:-2]
                self.wfile.write(b"STORED\r\n")
            elif words[:1] == ["delete"]:
                self.wfile.write(b"DELETED\r\n" if STORE.pop(words[1], None) else b"NOT_FOUND\r\n")
            else:
                self.wfile.write(b"ERROR\r\n")
if sys.argv[1] == "serve":
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[2])), Memcache).serve_forever()
with socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=3) as conn:
    conn.sendall(sys.argv[3].encode() + b"\r\n")
    print(conn.recv(100).decode().strip())
"""
MEMCACHE_PORT = 11211


# --------------------------------------------------------------------------- lifecycle


def test_idle_workers_exit_and_come_back(mail: Any) -> None:
    ip = container_ip(MAIL)
    assert smtp_banner(ip).startswith("220")
    # max_idle is 10s in this scenario: every smtpd worker leaves.
    wait_for(lambda: mail.run("pgrep -x smtpd").rc != 0, "idle smtpd workers to exit", timeout=60)
    assert unit_prop(mail, "postfix-default-smtp-inet.socket", "ActiveState") == "active"
    assert smtp_banner(ip).startswith("220")  # the socket starts a worker again
    assert mail.run("pgrep -x smtpd").rc == 0


def test_pool_grows_by_the_clients_that_wait(mail: Any) -> None:
    ip = container_ip(MAIL)
    clients = [socket.create_connection((ip, 25), timeout=30) for _unused in range(4)]
    try:
        # Each session holds a worker: the holder must start one per client left in the accept queue.
        for conn in clients:
            assert conn.recv(1024).startswith(b"220")
        pools = holder_status(mail)
        smtp = pools["postfix-default-smtp-inet"]
        assert smtp["waiting"] == 0  # the kernel tells the holder the queue length (TCP_INFO)
        assert 4 <= len(smtp["workers"]) + len(smtp["pending"]) <= 6, smtp  # not doubled ahead of demand
        cleanup = pools.get("postfix-default-cleanup-unix")
        assert cleanup is not None and isinstance(cleanup["waiting"], int), cleanup  # sock_diag, sandboxed
    finally:
        for conn in clients:
            conn.sendall(b"QUIT\r\n")
            conn.close()


def test_kill_9_qmgr_recovers(mail: Any) -> None:
    before = mail.run("pgrep -x qmgr").stdout.strip()
    assert before
    mail.run("pkill -9 -x qmgr")
    wait_for(lambda: mail.run("pgrep -x qmgr").stdout.strip() not in ("", before), "a new qmgr")
    subject = f"after-qmgr-{token()}"
    assert swaks(mail, "root@localhost", subject).rc == 0
    wait_for(in_mailbox(mail, "root", subject), "delivery after qmgr was killed")


def test_kill_9_busy_smtpd_recovers(mail: Any) -> None:
    ip = container_ip(MAIL)
    busy = socket.create_connection((ip, 25), timeout=20)
    try:
        assert busy.recv(1024).startswith(b"220")
        busy.sendall(b"EHLO busy.test\r\n")
        busy.recv(4096)
        mail.run("pkill -9 -x smtpd")  # the busy worker and any idle ones
        assert busy.recv(1024) == b""  # our session died with it
    finally:
        busy.close()
    wait_for(lambda: smtp_banner(ip).startswith("220"), "smtpd to answer again", timeout=30)
    subject = f"after-smtpd-{token()}"
    assert swaks(mail, "root@localhost", subject).rc == 0
    wait_for(in_mailbox(mail, "root", subject), "delivery after smtpd was killed")
    assert mail.run("systemctl list-units --failed --plain --no-legend 'postfix*'").stdout.strip() == ""


def test_postfix_status_answers(mail: Any) -> None:
    assert mail.run("postfix status").rc == 0
    holder_pid = unit_prop(mail, f"{HOLDER}.service", "MainPID")
    assert mail.file("/var/spool/postfix/pid/master.pid").content_string.split() == [holder_pid]
    # postfix start does not start a master beside the running instance.
    assert mail.run("postfix start").rc != 0


# Runs as root on the mail host: a child drops to mail_owner, is put into qmgr's cgroup (where a
# compromised daemon of the instance runs), and sends forged and broken requests to the holder.
ATTACK = r"""
import json, os, pwd, socket, sys
SOCK, QMGR = sys.argv[1], sys.argv[2]

def ask(data, fds=()):
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
        conn.settimeout(10)
        conn.connect(SOCK)
        socket.send_fds(conn, [data], list(fds))
        return conn.recv(1 << 20).decode(errors="replace")

def cgroup_of(pid):
    return [l.split(":", 2)[2] for l in open(f"/proc/{pid}/cgroup").read().splitlines() if l.startswith("0::")][0]

# /proc/PID/cgroup may name the container's cgroup from the host's root, and /sys/fs/cgroup may be
# the host's tree or the container's own subtree: try the path as it is and below the container's root.
root = cgroup_of(1).rsplit("/", 1)[0]
full = cgroup_of(sys.argv[3])
paths = {full, full[len(root):]}
go_r, go_w = os.pipe()
out_r, out_w = os.pipe()
child = os.fork()
if child == 0:
    pw = pwd.getpwnam("postfix")
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    os.read(go_r, 1)
    a, _b = socket.socketpair()
    null = os.open("/dev/null", os.O_RDONLY)
    own = f"unit={QMGR}\n".encode()
    res = {
        "another unit": ask(b"unit=postfix-default-smtp-inet@9.service\nmaxproc=0\nlock=pid/master.pid\n", [a.fileno()]),
        "foreign prefix": ask(b"unit=evil@1.service\nmaxproc=0\n", [a.fileno()]),
        "own unit, forged options": ask(own + b"maxproc=0\nmax_use=1\nlock=pid/master.pid\nstamp=/etc/evil\n", [a.fileno()]),
        "listener not a socket": ask(own, [a.fileno(), null]),
        "status not a socket": ask(own, [null]),
        "not UTF-8": ask(b"\xff\xfe\x00unit\n"),
        "too long": ask(b"x" * 100000),
        "too many descriptors": ask(own, [a.fileno()] * 80),
        "retire as mail_owner": ask(b"command=retire\npid=1\n"),
        "status": ask(b"command=status\n"),
    }
    os.write(out_w, json.dumps({"pid": os.getpid(), "replies": res}).encode())
    os._exit(0)
# cgroup v2, or the hybrid layout's unified and name=systemd hierarchies: the child goes into each.
moved = 0
for base in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"):
    for path in paths:
        if os.path.exists(f"{base}{path}/cgroup.procs"):
            with open(f"{base}{path}/cgroup.procs", "w") as procs:
                procs.write(str(child))
            moved += 1
assert moved, f"no cgroup directory for {full}"
assert cgroup_of(child).endswith("/" + QMGR), cgroup_of(child)
os.write(go_w, b"x")
os.close(out_w)
data = b""
while chunk := os.read(out_r, 65536):
    data += chunk
os.waitpid(child, 0)
print(data.decode())
"""


def test_holder_trusts_no_request(mail: Any) -> None:
    """Issue 14: mail_owner cannot make the holder chown, start or resize anything outside its own
    unit's pool; garbage is refused and logged, and the holder (and mail) go on."""
    qmgr = "postfix-default-qmgr-unix.service"
    holder_pid = unit_prop(mail, f"{HOLDER}.service", "MainPID")
    pid_file = "/var/spool/postfix/pid/master.pid"
    before = mail.run(f"stat -c '%u:%g %a %s %Y' {pid_file}; cat {pid_file}").stdout
    since = mail.run("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    time.sleep(1)
    res = subprocess.run(["podman", "exec", "-i", MAIL, "python3", "-", HOLDER_SOCK, qmgr, unit_prop(mail, qmgr, "MainPID")],
                         input=ATTACK, capture_output=True, text=True, check=False, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    got = out["replies"]
    print(f"holder: {json.dumps(got)[:2000]}")
    status = json.loads(got.pop("status"))
    for name in ("another unit", "foreign prefix"):
        assert "registers as" in got[name] or "not in a unit" in got[name], (name, got[name])
    # In qmgr's own cgroup, but qmgr is registered and alive: a child it forked cannot take its place.
    assert "registered daemon already" in got["own unit, forged options"], got
    assert all(reply.startswith("ERR") for reply in got.values()), got
    assert status["postfix-default-qmgr-unix"]["maxproc"] == 1
    assert "postfix-default-smtp-inet@9.service" not in json.dumps(status) and "evil" not in json.dumps(status)
    assert mail.run("systemctl list-units --all --plain --no-legend 'postfix-default-smtp-inet@9.service' 'evil*'").stdout.strip() == ""
    assert mail.run(f"stat -c '%u:%g %a %s %Y' {pid_file}; cat {pid_file}").stdout == before
    assert not mail.file("/etc/evil").exists
    assert unit_prop(mail, f"{HOLDER}.service", "MainPID") == holder_pid
    logged = mail.run(f"journalctl --no-pager -o cat -u {HOLDER}.service --since '{since}'").stdout
    assert logged.count(f"refused a request of pid {out['pid']} ") == len(got), logged
    # data_directory is mail_owner's: a symlink it puts at master.lock is replaced at the next holder
    # start, never followed (the holder is root).
    shadow = mail.run("stat -c '%u:%g %a %s %Y' /etc/shadow").stdout
    planted = mail.run("runuser -u postfix -- ln -sfn /etc/shadow /var/lib/postfix/master.lock")
    assert planted.rc == 0, planted.stderr
    assert mail.run(f"systemctl restart {HOLDER}.service").rc == 0
    wait_for(lambda: mail.run("postfix status").rc == 0, "postfix status after the holder restart", timeout=30)
    lock = mail.file("/var/lib/postfix/master.lock")
    assert lock.is_file and not lock.is_symlink and lock.user == "postfix" and lock.mode == 0o600
    assert mail.run("stat -c '%u:%g %a %s %Y' /etc/shadow").stdout == shadow
    new_pid = unit_prop(mail, f"{HOLDER}.service", "MainPID")
    assert mail.file(pid_file).content_string.split() == [new_pid] and mail.file(pid_file).user == "root"
    subject = f"after-attack-{token()}"
    assert swaks(mail, "root@localhost", subject).rc == 0
    wait_for(in_mailbox(mail, "root", subject), "mail after the forged requests", explain=lambda: mail_state(mail))


def test_daemons_without_ip_reach_their_table_servers(mail: Any) -> None:
    """verify(8) and virtual(8) run with IPAddressDeny=any unless their own tables need a server.

    verify keeps its cache in memcache here (memcache_table(5)): the unit lifts the filter and the
    probe result reaches the server. virtual(8) refuses tcp:, socketmap: and memcache: tables itself
    (DICT_FLAG_PARANOID), so for it only the rendered lines are checked.
    """
    gen = "/run/systemd/generator"
    verify, virtual = f"{gen}/postfix-default-verify-unix.service", f"{gen}/postfix-default-virtual-unix@.service"

    def ip_lines(unit: str) -> Optional[list[str]]:
        # None while a daemon-reload runs: systemd empties the generator directory before generators run.
        out = mail.run(f"cat -- {unit}")
        return [line for line in out.stdout.splitlines() if line.startswith("IPAddress")] if out.rc == 0 else None

    assert ip_lines(verify) == ip_lines(virtual) == ["IPAddressDeny=any"]
    script, server = "/usr/local/lib/memcache.py", "mailfleet-memcache"
    assert mail.run(f"cat > {script} <<'EOF'\n{MEMCACHE}\nEOF\n"
                    f"echo 'memcache = inet:127.0.0.1:{MEMCACHE_PORT}' > /etc/postfix/verify-memcache.cf && "
                    "cp -p /etc/postfix/main.cf /root/main.cf.pre-memcache && "
                    f"systemd-run -q --collect --unit={server} python3 {script} serve {MEMCACHE_PORT}").rc == 0
    try:
        settings = {
            "address_verify_map": "memcache:/etc/postfix/verify-memcache.cf",
            "address_verify_cache_cleanup_interval": "0",  # memcache cannot list its keys
            "smtpd_recipient_restrictions": "reject_unverified_recipient",
            "virtual_mailbox_domains": "virt.test", "virtual_mailbox_maps": "tcp:127.0.0.1:7781",
        }
        out = mail.run("postconf -e " + " ".join(f"'{k}={v}'" for k, v in settings.items()) + " && postfix reload")
        assert out.rc == 0, out.stderr
        wait_for(lambda: ip_lines(verify) == [], "the regenerated verify unit", timeout=15,
                 explain=lambda: str(ip_lines(verify)))
        assert ip_lines(virtual) == ["IPAddressDeny=any", "IPAddressAllow=127.0.0.1"]
        # IP filtering is enforced in the lab (cgroup BPF): the server answers this unit's peers, and
        # a unit with IPAddressDeny=any (verify before table_network) does not reach it.
        ask = f"python3 {script} ask {MEMCACHE_PORT} 'get mailfleet-probe'"
        open_ = mail.run(f"systemd-run -q --collect --wait --pipe {ask}")
        assert open_.stdout.strip() == "END", open_.stdout + open_.stderr
        deny = mail.run(f"systemd-run -q --collect --wait --pipe -p IPAddressDeny=any {ask}")
        assert deny.rc != 0 and ("timed out" in deny.stderr or "not permitted" in deny.stderr), deny.stderr
        # smtpd asks verify, verify looks the address up, probes it and stores the result in memcache.
        swaks(mail, "root@localhost", f"verify-{token()}")
        wait_for(lambda: mail.run(f"journalctl -b -q -o cat -u {server} | grep -qx 'set root@localhost .*'").rc == 0,
                 "verify(8) to store its probe result in memcache", timeout=30,
                 explain=lambda: mail.run(f"journalctl -b --no-pager -n 20 -u {server} -t postfix/verify "
                                          "-t postfix/smtpd").stdout)
    finally:
        mail.run("cp -p /root/main.cf.pre-memcache /etc/postfix/main.cf && postfix reload; "
                 f"systemctl stop {server}; rm -f {script} /etc/postfix/verify-memcache.cf")
    # The reload regenerates in the background: wait for it, as for the change above.
    wait_for(lambda: ip_lines(verify) == ip_lines(virtual) == ["IPAddressDeny=any"], "the restored verify unit",
             timeout=15, explain=lambda: f"{ip_lines(verify)} {ip_lines(virtual)}")


def test_reload_picks_up_a_changed_o_override(mail: Any) -> None:
    ip = container_ip(MAIL)
    banner = f"reload-{token()}.mailfleet.test"
    assert mail.run(f"postconf -P smtp/inet/smtpd_banner={banner}").rc == 0
    try:
        reload = mail.run("postfix reload")
        assert reload.rc == 0, reload.stderr
        wait_for(lambda: banner in smtp_banner(ip), "the new banner", timeout=30)
        unit = mail.file("/run/systemd/generator/postfix-default-smtp-inet@.service").content_string
        assert banner in unit
    finally:
        mail.run("postconf -PX smtp/inet/smtpd_banner")
        mail.run("postfix reload")


def test_drop_in_survives_regeneration(mail: Any) -> None:
    """docs/systemd.md, the chroot column: a per-service override is a drop-in the generator never touches."""
    unit = "postfix-default-smtp-inet@.service"
    drop_in = f"/etc/systemd/system/{unit}.d/50-mailfleet-test.conf"
    before = unit_prop(mail, "postfix-default-smtp-inet@1.service", "ProtectHome")
    assert before == "yes", before
    assert mail.run(f"mkdir -p /etc/systemd/system/{unit}.d && "
                    f"printf '[Service]\\nProtectHome=read-only\\n' > {drop_in}").rc == 0
    try:
        for regenerate in ("systemctl daemon-reload", "postfix reload", "systemctl daemon-reload"):
            assert mail.run(regenerate).rc == 0
            assert unit_prop(mail, "postfix-default-smtp-inet@1.service", "ProtectHome") == "read-only", regenerate
            assert "ProtectHome=yes" in mail.file(f"/run/systemd/generator/{unit}").content_string
    finally:
        mail.run(f"rm -rf /etc/systemd/system/{unit}.d && systemctl daemon-reload")
    assert unit_prop(mail, "postfix-default-smtp-inet@1.service", "ProtectHome") == "yes"


def test_reload_adds_and_removes_services(mail: Any) -> None:
    """master_refresh(): postfix reload starts a new entry and stops a removed one."""
    unit = "postfix-default-2526-inet.socket"
    listening = "ss -Hltn 'sport = :2526' | grep -q ."
    assert mail.run("postconf -M 2526/inet='2526 inet n - n - 1 smtpd'").rc == 0
    try:
        assert mail.run("postfix reload").rc == 0
        wait_for(lambda: mail.run(listening).rc == 0, "the new entry to listen", timeout=30)
    finally:
        assert mail.run("postconf -MX 2526/inet").rc == 0
        assert mail.run("postfix reload").rc == 0
    wait_for(lambda: mail.run(listening).rc != 0, "the removed entry to stop listening", timeout=30,
             explain=lambda: mail.run(f"systemctl status --no-pager {unit}").stdout)
    assert unit_prop(mail, unit, "ActiveState") in ("inactive", ""), unit_prop(mail, unit, "ActiveState")
    assert mail.run("systemctl list-units --failed --plain --no-legend").stdout.strip() == ""


def test_a_crash_looping_service_is_throttled_visibly_and_recovers(mail: Any) -> None:
    """master(8) throttles a service whose processes die at start (service_throttle_time): so do the units."""
    worker = "postfix-default-crashy-unix@1.service"
    crash = "postfix-default-crash@postfix-default-crashy-unix@1.service"

    def state() -> str:
        return mail.run(f"systemctl status --no-pager -n 20 '{worker}' '{crash}'; "
                        "systemctl list-units --failed --plain --no-legend").stdout

    assert mail.run("postconf -e service_throttle_time=10s").rc == 0
    # A bad time value: every smtp(8) process dies at start, before it serves anyone.
    assert mail.run("postconf -M crashy/unix='crashy unix - - n - - smtp -o ipc_timeout=bogus'").rc == 0
    try:
        assert mail.run("postfix reload").rc == 0
        wait_for(lambda: mail.run("test -S /var/spool/postfix/private/crashy").rc == 0, "the new listener", 30)
        started = time.monotonic()
        mail.run("python3 -c \"import socket; socket.socket(socket.AF_UNIX).connect('/var/spool/postfix/private/crashy')\"")
        wait_for(lambda: mail.run(f"systemctl is-failed --quiet '{crash}'").rc == 0, "a visible failed state", 40,
                 explain=state)
        print(f"crash back-off: failed state after {time.monotonic() - started:.1f} s")
        assert crash in failed_units(mail)
        # Throttled: no further attempt while the back-off lasts, and the listener stays up for the clients.
        restarts = unit_prop(mail, worker, "NRestarts")
        time.sleep(4)
        assert unit_prop(mail, worker, "NRestarts") == restarts, state()
        assert unit_prop(mail, worker, "SubState") == "start-pre", state()
        assert unit_prop(mail, "postfix-default-crashy-unix.socket", "ActiveState") == "active"
        # The rest of the instance keeps delivering.
        subject = f"during-crash-loop-{token()}"
        assert swaks(mail, "root@localhost", subject).rc == 0
        wait_for(in_mailbox(mail, "root", subject), "delivery while a service is throttled", 30)
        # Fault removed: after the back-off the service starts by itself and nothing stays failed.
        assert mail.run("postconf -M crashy/unix='crashy unix - - n - - smtp'").rc == 0
        assert mail.run("postfix reload").rc == 0
        wait_for(lambda: unit_prop(mail, worker, "SubState") == "running", "the repaired service to run", 40,
                 explain=state)
        wait_for(lambda: failed_units(mail) == "", "no failed unit after the back-off", 20, explain=state)
    finally:
        mail.run("postconf -MX crashy/unix; postconf -X service_throttle_time; postfix reload")
        mail.run(f"systemctl reset-failed '{crash}'")
    wait_for(lambda: failed_units(mail) == "", "no failed unit after the removal", 30, explain=state)


def test_postfix_stop_stops_the_instance(mail: Any) -> None:
    assert mail.run("postfix stop").rc == 0
    wait_for(lambda: not mail.service(TARGET).is_running, "the target to stop", timeout=60)
    wait_for(lambda: mail.run("pgrep -u postfix -x qmgr").rc != 0, "qmgr to exit", timeout=60)
    assert mail.run("postfix status").rc != 0
    # postfix start on the stopped instance starts its target, not a master (no_master checks after).
    start = mail.run("postfix start")
    assert start.rc == 0, start.stderr
    assert mail.service(TARGET).is_running
    wait_for(lambda: mail.run("postfix status").rc == 0, "the instance to run again")
    subject = f"after-stop-{token()}"
    assert swaks(mail, "root@localhost", subject).rc == 0
    wait_for(in_mailbox(mail, "root", subject), "delivery after postfix stop and a start")


def test_package_reinstall_starts_no_master(mail: Any) -> None:
    # dpkg keeps the diversion: the package's postfix-script goes aside, the router stays.
    diversion = mail.run("dpkg-divert --list /usr/lib/postfix/sbin/postfix-script").stdout
    update = mail.run("apt-get update -qq")
    if update.rc != 0:
        pytest.skip(f"no Debian mirror reachable: {update.stderr.strip()}")
    out = mail.run("DEBIAN_FRONTEND=noninteractive apt-get install --reinstall -y -q postfix")
    assert out.rc == 0, out.stderr
    time.sleep(3)
    assert mail.run("pgrep -x master").stdout == ""
    assert mail.service(TARGET).is_running
    assert "postfix-script.distrib" in diversion
    assert "mailfleet" in mail.file("/usr/lib/postfix/sbin/postfix-script").content_string
    assert mail.file("/usr/lib/postfix/sbin/postfix-script.distrib").exists
    subject = f"after-reinstall-{token()}"
    assert swaks(mail, "root@localhost", subject).rc == 0
    wait_for(in_mailbox(mail, "root", subject), "delivery after the package reinstall")


def test_broken_master_cf_keeps_the_units(mail: Any) -> None:
    mail.run("cp -p /etc/postfix/master.cf /root/master.cf.good")
    try:
        mail.run("echo 'oops unix - - y - - frobnicate' >> /etc/postfix/master.cf")
        assert mail.run("systemctl daemon-reload").rc == 0
        log = mail.run("journalctl -b --no-pager -t mailfleet-postfix-generator -n 5").stdout
        assert "frobnicate" in log and "keeping the last good unit set" in log
        assert mail.file("/run/systemd/generator/postfix-default-smtp-inet.socket").exists
        assert mail.service(TARGET).is_running
    finally:
        mail.run("cp -p /root/master.cf.good /etc/postfix/master.cf && systemctl daemon-reload")


# --------------------------------------------------------------------------- mode switches


def switch(mode: str) -> subprocess.CompletedProcess[str]:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE", "")
    return subprocess.run(["ansible-playbook", "-i", inventory, os.path.join(here, "switch.yml"), "-e", f"mode={mode}"],
                          capture_output=True, text=True, timeout=600, check=False)


def queue_two(mail: Any, tag: str) -> list[str]:
    """Two messages held in the queue (local delivery deferred) while one side runs."""
    mail.run("postconf -e defer_transports=local && postfix reload")
    time.sleep(2)
    subjects = [f"{tag}-{token()}", f"{tag}-{token()}"]
    swaks(mail, "root@localhost", subjects[0])
    mail.run(f"printf 'Subject: {subjects[1]}\\n\\nbody\\n' | sendmail root")

    def queued() -> bool:
        return int(mail.run("postqueue -p | grep -c '^[0-9A-F]'").stdout.strip() or 0) >= 2

    wait_for(queued, "two queued messages")
    mail.run("postconf -e defer_transports=")
    return subjects


def failed_units(host: Any) -> str:
    return host.run("systemctl list-units --failed --plain --no-legend").stdout.strip()


def set_pickup(mail: Any, kind: str) -> None:
    """pickup as a unix or a fifo service (master.cf(5) allows both), the other entry removed."""
    other = "fifo" if kind == "unix" else "unix"
    out = mail.run(f"postconf -MX pickup/{other} && postconf -M pickup/{kind}='pickup {kind} n - y 60 1 pickup'")
    assert out.rc == 0, out.stderr


def sendmail_delivers(mail: Any, tag: str) -> None:
    subject = f"{tag}-{token()}"
    assert mail.run(f"printf 'Subject: {subject}\\n\\nbody\\n' | sendmail root").rc == 0
    wait_for(in_mailbox(mail, "root", subject), f"sendmail mail ({tag}) in /var/mail/root",
             explain=lambda: mail_state(mail) + mail.run("ls -l /var/spool/postfix/public /var/spool/postfix/maildrop; "
                                                         "systemctl status --no-pager 'postfix-default-pickup*'").stdout)


@pytest.mark.skipif(not os.environ.get("MOLECULE_INVENTORY_FILE"), reason="needs molecule's inventory")
def test_pickup_unix_to_fifo_keeps_local_submission(mail: Any) -> None:
    set_pickup(mail, "fifo")
    result = switch("systemd")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    # The socket that listened there is gone, a FIFO replaced it (as master(8) replaces a stale endpoint).
    assert mail.run("test -p /var/spool/postfix/public/pickup").rc == 0
    assert unit_prop(mail, "postfix-default-pickup-fifo.socket", "SubState") in ("listening", "running")
    sendmail_delivers(mail, "pickup-fifo")
    time.sleep(2)  # the wakeup timer fires 1 s after the start
    assert unit_prop(mail, "postfix-default-pickup-fifo-wakeup.service", "Result") == "success"
    assert failed_units(mail) == "", "the removed pickup-unix units left failed units behind"


@pytest.mark.skipif(not os.environ.get("MOLECULE_INVENTORY_FILE"), reason="needs molecule's inventory")
def test_switch_to_master_delivers_the_queue(mail: Any) -> None:
    subjects = queue_two(mail, "to-master")
    result = switch("master")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    # The module waited for master.pid to name a live master: if it is gone now, say who stopped it.
    assert mail.run("pgrep -x master").stdout.strip(), (
        result.stdout[-2000:] + mail.run("journalctl -b --no-pager -n 60 -o short-precise").stdout)
    assert not mail.service(TARGET).is_running
    assert mail.run("pgrep -u postfix -f 'bridge holder'").rc != 0
    mail.run("postqueue -f")
    for subject in subjects:
        wait_for(in_mailbox(mail, "root", subject), f"{subject} delivered by master")
    # No instance is master-less any more: Postfix's own postfix-script is back in place.
    assert mail.run("dpkg-divert --list /usr/lib/postfix/sbin/postfix-script").stdout.strip() == ""
    assert "mailfleet" not in mail.file("/usr/lib/postfix/sbin/postfix-script").content_string


@pytest.mark.skipif(not os.environ.get("MOLECULE_INVENTORY_FILE"), reason="needs molecule's inventory")
def test_switch_back_to_systemd_delivers_the_queue(mail: Any) -> None:
    subjects = queue_two(mail, "to-systemd")
    result = switch("systemd")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert mail.run("pgrep -x master").stdout == ""
    assert mail.service(TARGET).is_running
    mail.run("postqueue -f")
    for subject in subjects:
        wait_for(in_mailbox(mail, "root", subject), f"{subject} delivered master-less")
    assert mail.run("pgrep -x master").stdout == ""
    # master(8) left its own FIFO (owned by postfix) at public/pickup: the socket unit replaced it.
    sendmail_delivers(mail, "fifo-after-master")
    assert failed_units(mail) == ""


@pytest.mark.skipif(not os.environ.get("MOLECULE_INVENTORY_FILE"), reason="needs molecule's inventory")
def test_pickup_fifo_to_unix_keeps_local_submission(mail: Any) -> None:
    set_pickup(mail, "unix")
    result = switch("systemd")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert mail.run("test -S /var/spool/postfix/public/pickup").rc == 0
    assert unit_prop(mail, "postfix-default-pickup-unix.socket", "SubState") in ("listening", "running")
    sendmail_delivers(mail, "pickup-unix")
    assert failed_units(mail) == ""


@pytest.mark.skipif(not os.environ.get("MOLECULE_INVENTORY_FILE"), reason="needs molecule's inventory")
def test_switch_to_master_leaves_no_failed_units(mail: Any) -> None:
    # master -> master-less -> master (with a type change in between): nothing stays failed, not even
    # units that no longer exist.
    result = switch("master")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert mail.run("pgrep -x master").stdout.strip()
    assert failed_units(mail) == ""
    # Only the (empty) slice stays loaded: systemd loads a slice by its name alone.
    left = mail.run("systemctl list-units --all --plain --no-legend 'postfix-default*'").stdout.split("\n")
    assert [line.split()[0] for line in left if line.strip()] in ([], ["postfix-default.slice"]), left
    sendmail_delivers(mail, "master-again")
