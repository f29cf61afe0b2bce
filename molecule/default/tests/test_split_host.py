# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One host, two instances: the edge on the host's address, the delivery tier on loopback."""

from __future__ import annotations

import re
import uuid
from typing import Any

EDGE = "/etc/postfix-edge"
DELIVERY_COMMANDS = ("local", "virtual", "pipe", "spawn")


def _address(host: Any) -> str:
    return host.check_output("ip -4 -o route get 1.1.1.1 | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'")


def _swaks(host: Any, server: str, rcpt: str, *, extra: str = "") -> Any:
    return host.run(f"swaks --server {server} --from probe@outside.invalid --to {rcpt} --helo outside.invalid {extra}")


def test_both_instances_are_registered(host: Any) -> None:
    listing = host.check_output("postmulti -l")
    assert re.search(r"^-\s+-\s+[yn]\s+/etc/postfix$", listing, re.M), listing
    assert re.search(rf"^postfix-edge\s+-\s+y\s+{EDGE}$", listing, re.M), listing
    assert host.check_output(f"postconf -c {EDGE} -h queue_directory") == "/var/spool/postfix-edge"


def test_edge_listens_on_the_host_address_and_delivery_only_on_loopback(host: Any) -> None:
    address = _address(host)
    assert host.check_output(f"postconf -c {EDGE} -h inet_interfaces") == address
    assert host.check_output("postconf -h inet_interfaces") == "127.0.0.1"
    listeners = host.check_output("ss -Hltn 'sport = :25'")
    assert sorted(line.split()[3] for line in listeners.splitlines()) == sorted([f"{address}:25", "127.0.0.1:25"])


def test_edge_runs_no_delivery_service(host: Any) -> None:
    commands = {line.split()[7] for line in host.check_output(f"postconf -c {EDGE} -M").splitlines()}
    assert not commands & set(DELIVERY_COMMANDS), commands
    primary = {line.split()[7] for line in host.check_output("postconf -M").splitlines()}
    assert "local" in primary


def daemon_units(host: Any, prefix: str) -> list[str]:
    """Loaded services of an instance that run Postfix (master or its daemons), not helpers."""
    units = host.check_output(
        f"systemctl list-units --all --type=service --plain --no-legend '{prefix}*' | awk '{{print $1}}'"
    ).split()
    return [u for u in units if re.search(r"/usr/(lib/postfix/sbin/|sbin/postfix)", host.check_output(f"systemctl show -p ExecStart --value {u}"))]


def test_edge_units_protect_home(host: Any) -> None:
    units = daemon_units(host, "postfix-edge")
    assert units, "no systemd service of the edge instance runs Postfix"
    for unit in units:
        assert host.check_output(f"systemctl show -p ProtectHome --value {unit}") in ("yes", "read-only", "tmpfs"), unit


def test_mail_through_the_edge_reaches_the_mailbox(host: Any) -> None:
    token = f"mailfleet-{uuid.uuid4().hex}"
    sent = _swaks(host, _address(host), "alice@split.example", extra=f"--header 'Subject: {token}'")
    assert sent.rc == 0, sent.stdout
    host.run(f"for i in $(seq 30); do grep -qs {token} /var/mail/alice && break; sleep 1; done")
    assert token in host.file("/var/mail/alice").content_string


def test_edge_refuses_to_relay_to_foreign_domains(host: Any) -> None:
    result = _swaks(host, _address(host), "someone@foreign.example", extra="--quit-after RCPT")
    assert re.search(r"<\*\* 554 5\.7\.1 .*Relay access denied", result.stdout), result.stdout


def test_no_master_runs_in_master_less_mode(host: Any) -> None:
    mode = host.check_output("systemctl is-active postfix-edge.target || true")
    if mode == "active":
        assert host.run("pgrep -x master").rc == 1
