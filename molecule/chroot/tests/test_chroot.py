# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Classic mode: chrooted daemons resolve through their jail, units are hardened per instance kind."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from typing import Any, Callable

import pytest
import testinfra

MAIL = "mailfleet-mol-chroot"
SINK = "mailfleet-mol-chroot-sink"
EDGE_UNIT = "postfix-edge-master.service"
DELIVERY_UNIT = "postfix-default-master.service"


@pytest.fixture(scope="module")
def mail() -> Any:
    return testinfra.get_host(f"podman://{MAIL}")


@pytest.fixture(scope="module")
def sink() -> Any:
    return testinfra.get_host(f"podman://{SINK}")


def wait_for(check: Callable[[], bool], what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def send(host: Any, to: str, subject: str, server: str = "127.0.0.1:25", *extra: str) -> Any:
    cmd = f"swaks --silent 2 --server {server} --from probe@local.test --to {to} --header 'Subject: {subject}'"
    return host.run(" ".join([cmd, *extra]))


def privileged(*argv: str) -> subprocess.CompletedProcess[str]:
    """A command in the mail host with CAP_SYS_PTRACE, needed to enter another process's namespaces."""
    return subprocess.run(["podman", "exec", "--privileged", MAIL, *argv], capture_output=True, text=True,
                          timeout=60, check=False)


def main_pid(host: Any, unit: str) -> int:
    return int(host.check_output(f"systemctl show -p MainPID --value {unit}"))


# --------------------------------------------------------------------------- jail and name resolution


def test_chrooted_relay_resolves_the_sink_by_name_through_the_jail(mail: Any, sink: Any) -> None:
    token = f"mailfleet-relay-{uuid.uuid4().hex[:8]}"
    assert send(mail, "bob@remote.test", token).rc == 0
    wait_for(lambda: sink.run(f"grep -q {token} /var/mail/bob").rc == 0, "mail at the sink")
    assert "y" == mail.check_output("postconf -c /etc/postfix-edge -Fh relay/unix/chroot")
    log = mail.check_output("journalctl --no-pager -t postfix/relay/smtp")
    assert re.search(rf"to=<bob@remote.test>, relay={SINK}\[[0-9.]+\]:25, .*status=sent", log)


def test_mail_deferred_by_the_broken_jail_was_delivered_after_the_repair(sink: Any) -> None:
    wait_for(lambda: sink.run("grep -q mailfleet-side-effect-broken-jail /var/mail/bob").rc == 0,
             "the mail deferred in side_effect")


def test_starttls_from_the_chrooted_client_verifies_with_capath_in_the_jail(mail: Any) -> None:
    log = mail.check_output("journalctl --no-pager -t postfix/relay/smtp")
    assert f"Trusted TLS connection established to {SINK}[" in log
    assert mail.file("/var/spool/postfix-edge/etc/ssl/certs/mailfleet-sink.pem").is_file


def test_starttls_into_the_chrooted_edge_smtpd(mail: Any, sink: Any) -> None:
    assert "y" == mail.check_output("postconf -c /etc/postfix-edge -Fh smtp/inet/chroot")
    # swaks lacks Net::SSLeay in the lab image; openssl speaks STARTTLS itself.
    result = sink.run(f"echo QUIT | openssl s_client -brief -starttls smtp -connect {MAIL}:25")
    assert result.rc == 0, result.stdout + result.stderr
    assert "CONNECTION ESTABLISHED" in result.stderr + result.stdout
    wait_for(lambda: "TLS connection established from" in mail.check_output(
        "journalctl --no-pager -t postfix-edge/smtpd"), "the edge smtpd's TLS log line", timeout=10)


def test_jail_holds_the_planned_files_with_a_manifest(mail: Any) -> None:
    for jail in ("/var/spool/postfix", "/var/spool/postfix-edge"):
        for name in ("etc/resolv.conf", "etc/hosts", "etc/services", "etc/nsswitch.conf",
                     "lib/x86_64-linux-gnu/libnss_files.so.2", "etc/.mailfleet-chroot-manifest"):
            assert mail.file(f"{jail}/{name}").is_file, f"{jail}/{name}"


def test_jail_copy_keeps_the_source_mode_and_owner(mail: Any) -> None:
    source, copy = "/etc/mailfleet-jail-probe", "/var/spool/postfix/etc/mailfleet-jail-probe"
    assert mail.check_output(f"stat -c '%a %U %G' {copy}") == "640 root postfix"
    # The sandboxed refresh unit (CapabilityBoundingSet=CAP_CHOWN) keeps them too.
    marker = f"# mailfleet-{uuid.uuid4().hex[:8]}"
    mail.check_output(f"echo '{marker}' >> {source}")
    try:
        mail.check_output("systemctl start postfix-default-jail.service")
        assert marker in mail.check_output(f"cat {copy}")
        assert mail.check_output(f"stat -c '%a %U %G' {copy}") == "640 root postfix"
    finally:
        mail.run(f"sed -i '/{marker}/d' {source}")


def test_path_unit_refreshes_the_jail_when_hosts_changes(mail: Any) -> None:
    marker = f"# mailfleet-{uuid.uuid4().hex[:8]}"
    mail.check_output(f"echo '{marker}' >> /etc/hosts")
    try:
        wait_for(lambda: marker in mail.file("/var/spool/postfix-edge/etc/hosts").content_string,
                 "the .path unit to refresh the jail", timeout=20)
    finally:
        mail.run(f"sed -i '/{marker}/d' /etc/hosts")


# --------------------------------------------------------------------------- units and hardening


def test_one_master_per_instance_each_in_its_own_unit(mail: Any) -> None:
    masters = mail.check_output("pgrep -x master | sort").split()
    assert len(masters) == 2
    for unit in (EDGE_UNIT, DELIVERY_UNIT):
        pid = main_pid(mail, unit)
        assert str(pid) in masters
        assert mail.file(f"/proc/{pid}/cgroup").content_string.rstrip().endswith(f"/{unit}")
    for debian in ("postfix@-.service", "postfix@postfix-edge.service"):
        assert mail.run(f"systemctl is-enabled {debian}").stdout.strip() == "masked"


def test_starting_postfix_service_does_not_start_a_second_master(mail: Any) -> None:
    mail.check_output("systemctl start postfix.service")
    time.sleep(1)
    assert len(mail.check_output("pgrep -x master").split()) == 2


def test_reload_goes_through_postfix_reload(mail: Any) -> None:
    pid = main_pid(mail, EDGE_UNIT)
    mail.check_output(f"systemctl reload {EDGE_UNIT}")
    assert main_pid(mail, EDGE_UNIT) == pid
    wait_for(lambda: "refreshing the Postfix mail system" in mail.check_output(
        "journalctl --no-pager -t postfix-edge/postfix-script"), "postfix reload in the log", timeout=10)


def test_edge_smtpd_cannot_list_or_read_home(mail: Any) -> None:
    assert mail.file("/home/alice/secret").is_file
    # Keep one SMTP session open so an smtpd of the edge instance is running.
    holder = subprocess.Popen(["podman", "exec", MAIL, "python3", "-c",
                               "import socket,time; s=socket.create_connection(('127.0.0.1',25)); "
                               "s.recv(256); time.sleep(20)"])
    try:
        master = main_pid(mail, EDGE_UNIT)
        wait_for(lambda: mail.run(f"pgrep -P {master} -x smtpd").rc == 0, "an edge smtpd", timeout=10)
        smtpd = mail.check_output(f"pgrep -P {master} -x smtpd").split()[0]
        root = privileged("readlink", f"/proc/{smtpd}/root").stdout.strip()
        assert root == "/var/spool/postfix-edge"  # chrooted: no /home in its root at all
        assert privileged("ls", f"/proc/{smtpd}/root/home").returncode != 0
        # Its mount namespace (what it would see without the chroot): ProtectHome=yes.
        listing = privileged("nsenter", "-t", smtpd, "-m", "ls", "-A", "/home")
        assert listing.returncode == 0 and listing.stdout.strip() == "", listing.stdout + listing.stderr
        assert privileged("nsenter", "-t", smtpd, "-m", "cat", "/home/alice/secret").returncode != 0
        assert privileged("nsenter", "-t", smtpd, "-m", "touch", "/etc/mailfleet-probe").returncode != 0
    finally:
        holder.kill()
        holder.wait()


def test_local_delivery_and_setgid_postdrop_work_in_the_delivery_instance(mail: Any) -> None:
    token = f"mailfleet-local-{uuid.uuid4().hex[:8]}"
    assert send(mail, "alice@local.test", token).rc == 0  # edge -> 127.0.0.1:2525 -> local(8)
    wait_for(lambda: mail.run(f"grep -q {token} /var/mail/alice").rc == 0, "local delivery to alice")
    # .forward: a Maildir in alice's home (ProtectHome=no), and sendmail, which needs set-gid postdrop.
    wait_for(lambda: mail.run(f"grep -rq {token} /home/alice/Maildir/new").rc == 0, "the .forward copy to ~/Maildir")
    assert mail.check_output("stat -c %U /home/alice/Maildir/new") == "alice"
    wait_for(lambda: mail.run(f"grep -q {token} /var/mail/carol").rc == 0, "the .forward copy via postdrop")
    # Only what local and pipe need is relaxed; smtpd in the same unit keeps the rest.
    shown = mail.check_output(f"systemctl show {DELIVERY_UNIT} -p NoNewPrivileges -p ProtectHome -p PrivateDevices "
                              "-p PrivateTmp -p RestrictSUIDSGID -p RestrictNamespaces -p ProtectClock "
                              "-p RestrictAddressFamilies -p SystemCallFilter")
    got = dict(line.split("=", 1) for line in shown.splitlines())
    assert got["NoNewPrivileges"] == "no" and got["ProtectHome"] == "no"
    for key in ("PrivateDevices", "PrivateTmp", "RestrictSUIDSGID", "ProtectClock"):
        assert got[key] == "yes", key
    assert got["RestrictNamespaces"] != "no" and got["SystemCallFilter"] not in ("", "~")
    assert set(got["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}


def test_no_new_privileges_would_break_the_forward_through_postdrop(mail: Any) -> None:
    """The one relaxation local(8) cannot do without, shown: with NoNewPrivileges postdrop loses its set-gid."""
    dropin = f"/run/systemd/system/{DELIVERY_UNIT}.d/mailfleet-nnp.conf"
    token = f"mailfleet-nnp-{uuid.uuid4().hex[:8]}"
    since = mail.check_output("date +%s")
    mail.check_output(f"mkdir -p {dropin.rpartition('/')[0]} && printf '[Service]\\nNoNewPrivileges=yes\\n' > {dropin}"
                      f" && systemctl daemon-reload && systemctl restart {DELIVERY_UNIT}")
    try:
        assert send(mail, "alice@local.test", token).rc == 0
        wait_for(lambda: mail.run(f"grep -q {token} /var/mail/alice").rc == 0, "local delivery to alice")
        wait_for(lambda: "mail_queue_enter: create file maildrop/" in mail.check_output(
            f"journalctl --no-pager --since @{since} -t postfix/postdrop"), "postdrop's permission error")
        assert mail.run(f"grep -q {token} /var/mail/carol").rc != 0
    finally:
        mail.check_output(f"rm -f {dropin} && systemctl daemon-reload && systemctl restart {DELIVERY_UNIT}")
    mail.check_output("postqueue -f")
    wait_for(lambda: mail.run(f"grep -q {token} /var/mail/carol").rc == 0, "the deferred .forward copy after the fix")


def test_edge_and_delivery_hardening_differ_as_computed(mail: Any) -> None:
    edge = mail.check_output(f"systemctl show {EDGE_UNIT} -p NoNewPrivileges -p ProtectHome -p ProtectSystem")
    assert "NoNewPrivileges=yes" in edge and "ProtectHome=yes" in edge and "ProtectSystem=strict" in edge
    delivery = mail.check_output(f"systemctl show {DELIVERY_UNIT} -p NoNewPrivileges -p ProtectHome")
    assert "NoNewPrivileges=no" in delivery and "ProtectHome=no" in delivery


# docs/chroot.md: local + pipe relax only what their programs need (6.8 before, when they dropped everything).
@pytest.mark.parametrize(("unit", "limit"), [(EDGE_UNIT, 3.0), (DELIVERY_UNIT, 3.5)])
def test_exposure(mail: Any, unit: str, limit: float, capsys: pytest.CaptureFixture[str]) -> None:
    out = mail.run(f"systemd-analyze security --offline=yes /etc/systemd/system/{unit}")
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout + out.stderr)
    assert match, out.stdout + out.stderr
    score = float(match.group(1))
    debian = mail.run("systemd-analyze security --offline=yes /lib/systemd/system/postfix@.service")
    with capsys.disabled():
        print(f"\nexposure {unit}: {score} (Debian postfix@.service: "
              f"{re.findall(r'exposure level for [^:]+: ([0-9.]+)', debian.stdout)})")
    assert score <= limit
