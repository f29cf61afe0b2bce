# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Two edge hosts, one delivery host, one outside client: the split holds from the outside."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from typing import Any

import pytest
import testinfra
from molecule_podman_hosts import hosts_in_group

testinfra_hosts = hosts_in_group("client")
EDGES = [spec.split("://", 1)[1] for spec in hosts_in_group("edge")]
DELIVERY = hosts_in_group("delivery")[0]
DELIVERY_NAME = DELIVERY.split("://", 1)[1]
MAILDIR = "/home/alice/Maildir"


def _swaks(host: Any, server: str, rcpt: str, *, extra: str = "") -> Any:
    return host.run(f"swaks --server {server} --from probe@outside.invalid --to {rcpt} --helo outside.invalid {extra}")


def _delivery() -> Any:
    return testinfra.get_host(DELIVERY)


@pytest.mark.parametrize("edge", EDGES)
def test_mail_from_outside_through_each_edge_reaches_the_mailbox(host: Any, edge: str) -> None:
    token = f"mailfleet-{uuid.uuid4().hex}"
    sent = _swaks(host, edge, "alice@fleet.example", extra=f"--header 'Subject: {token}'")
    assert sent.rc == 0, sent.stdout
    delivery = _delivery()
    found = delivery.run(f"for i in $(seq 30); do grep -rqsF {token} {MAILDIR} && exit 0; sleep 1; done; exit 1")
    assert found.rc == 0, f"{token} sent through {edge} is not in {MAILDIR} on {DELIVERY_NAME}"


def test_the_hop_to_the_delivery_tier_is_encrypted_and_reused(host: Any) -> None:
    edge = testinfra.get_host(f"podman://{EDGES[0]}")
    since = edge.check_output("date '+%Y-%m-%d %H:%M:%S'")
    tokens = [f"mailfleet-hop-{uuid.uuid4().hex}" for _unused in range(4)]
    # In a row: each mail finds the previous one's connection in the edge's cache (2 s).
    sent = host.run("; ".join(
        f"swaks --server {EDGES[0]} --from probe@outside.invalid --to alice@fleet.example --helo outside.invalid "
        f"--header 'Subject: {t}' >/dev/null || exit 1" for t in tokens))
    assert sent.rc == 0, sent.stdout + sent.stderr
    delivery = _delivery()
    for token in tokens:
        found = delivery.run(f"for i in $(seq 30); do f=$(grep -rlsF {token} {MAILDIR}) && echo $f && exit 0; sleep 1; done; "
                             "exit 1")
        assert found.rc == 0, f"{token} sent through {EDGES[0]} is not in {MAILDIR} on {DELIVERY_NAME}"
    # The topmost Received header is the delivery tier's: ESMTPS when the edge's session used TLS (RFC 3848).
    mail = delivery.file(found.stdout.strip()).content_string
    received = re.search(r"^Received:.*?(?=^\S)", mail, re.M | re.S)
    assert received and re.search(r"\swith ESMTPS\s", received.group(0)), mail
    relayed = edge.run(f"journalctl -q -o cat --since '{since}' | grep -E 'status=sent' | grep -E 'relay=[^ ]*:25,'")
    assert relayed.rc == 0, relayed.stdout
    reused = [line for line in relayed.stdout.splitlines() if ", conn_use=" in line]  # logged from the second use on
    assert reused, f"no mail reused a connection to the delivery tier:\n{relayed.stdout}"


@pytest.mark.parametrize("edge", EDGES)
def test_edge_refuses_to_relay_to_foreign_domains(host: Any, edge: str) -> None:
    result = _swaks(host, edge, "someone@foreign.example", extra="--quit-after RCPT")
    assert re.search(r"<\*\* 554 5\.7\.1 .*Relay access denied", result.stdout), result.stdout


def test_delivery_host_refuses_smtp_from_outside(host: Any) -> None:
    result = _swaks(host, DELIVERY_NAME, "alice@fleet.example", extra="--quit-after RCPT")
    refused = result.rc != 0 and (re.search(r"<\*\* 5\d\d ", result.stdout) or "Connection refused" in result.stdout)
    assert refused, result.stdout


def test_delivery_host_delivers_locally() -> None:
    delivery = _delivery()
    commands = {line.split()[7] for line in delivery.check_output("postconf -M").splitlines()}
    assert "local" in commands
    assert delivery.check_output("postconf -h home_mailbox") == "Maildir/"
    assert delivery.check_output("postconf -h smtpd_client_restrictions") == "permit_mynetworks, reject"


@pytest.mark.parametrize("edge", EDGES)
def test_edge_units_protect_home_and_run_no_delivery(edge: str) -> None:
    node = testinfra.get_host(f"podman://{edge}")
    commands = {line.split()[7] for line in node.check_output("postconf -M").splitlines()}
    assert not commands & {"local", "virtual", "pipe", "spawn"}, commands
    units = node.check_output(
        "systemctl list-units --all --type=service --plain --no-legend 'postfix-*' | awk '{print $1}'"
    ).split()
    daemons = [u for u in units if re.search(r"/usr/(lib/postfix/sbin/|sbin/postfix)",
                                             node.check_output(f"systemctl show -p ExecStart --value {u}"))]
    assert daemons, f"no systemd service runs Postfix on {edge}"
    for unit in daemons:
        assert node.check_output(f"systemctl show -p ProtectHome --value {unit}") in ("yes", "read-only", "tmpfs"), unit


# --------------------------------------------------------------------------- status after an outage

# The client runs no Postfix of its own: the status covers the two tiers.
STATUS_HOSTS = "mailfleet_edge:mailfleet_delivery"
SUPERVISORS = ("postfix-default.target", "postfix-default-master.service", "postfix@-.service", "postfix.service")


METRICS = "/var/lib/prometheus/node-exporter/mailfleet_postfix.prom"


def _metrics(node: Any) -> str:
    return node.run(f"cat {METRICS}").stdout


@pytest.mark.parametrize("name", [*EDGES, DELIVERY_NAME])
def test_the_metrics_timer_writes_the_hosts_status_from_its_sandbox(name: str) -> None:
    node = testinfra.get_host(f"podman://{name}")
    timer = node.service("mailfleet-postfix-metrics.timer")
    assert timer.is_enabled and timer.is_running
    _wait(lambda: "mailfleet_postfix_up{" in _metrics(node), f"{METRICS} on {name}")
    _wait(lambda: node.run("systemctl show -p Result --value mailfleet-postfix-metrics.service").stdout.strip()
          == "success", f"a successful run on {name}")
    text = _metrics(node)
    ups = re.findall(r'^mailfleet_postfix_up\{postfix_instance="([^"]+)"\} (\d)$', text, re.M)
    assert ups and all(value == "1" for _unused, value in ups), text
    # Queue counts need the queue directories: the sandbox's capabilities are enough for them.
    assert re.search(r'^mailfleet_postfix_queue_messages\{postfix_instance="[^"]+",queue="deferred"\} \d+$', text, re.M)
    assert 'mailfleet_postfix_info{postfix_instance="' in text and 'health="ok"' in text, text
    mode = node.run(f"stat -c %a {METRICS}").stdout.strip()
    assert mode == "644", mode


def _status_playbook() -> subprocess.CompletedProcess[str]:
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE", "")
    # molecule forces colours, which would wrap every line of the table in escape sequences.
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_FORCE_COLOR"} | {"ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(["ansible-playbook", "-i", inventory, "mailfleet.postfix.status",
                           "-e", f"mailfleet_status_hosts={STATUS_HOSTS}"],
                          capture_output=True, text=True, timeout=600, check=False, env=env)


def _deferred(node: Any) -> list[dict[str, Any]]:
    lines = node.check_output("postqueue -j").splitlines()
    return [m for m in map(json.loads, filter(None, lines)) if m.get("queue_name") == "deferred"]


def _queued(node: Any) -> int:
    return len([line for line in node.check_output("postqueue -j").splitlines() if line.strip()])


def _wait(check: Any, what: str, seconds: int = 60) -> None:
    for _unused in range(seconds):
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


@pytest.mark.skipif(not os.environ.get("MOLECULE_INVENTORY_FILE"), reason="needs molecule's inventory")
def test_status_reports_an_outage_of_the_delivery_tier_then_recovers(host: Any) -> None:
    delivery = _delivery()
    unit = next((u for u in SUPERVISORS if delivery.run(f"systemctl is-active --quiet {u}").rc == 0), None)
    assert unit, f"no running Postfix supervisor on {DELIVERY_NAME}"
    edges = {edge: testinfra.get_host(f"podman://{edge}") for edge in EDGES}
    tokens = {edge: [f"mailfleet-outage-{uuid.uuid4().hex}" for _unused in range(2)] for edge in EDGES}
    stopped = delivery.run(f"systemctl stop {unit}")
    assert stopped.rc == 0, stopped.stderr
    try:
        for edge, subjects in tokens.items():
            for subject in subjects:
                sent = _swaks(host, edge, "alice@fleet.example", extra=f"--header 'Subject: {subject}'")
                assert sent.rc == 0, sent.stdout
        for edge, node in edges.items():
            _wait(lambda node=node, edge=edge: len(_deferred(node)) == len(tokens[edge]), f"deferred mail on {edge}")
        for edge, node in edges.items():  # the timer runs every 10 s in this scenario
            _wait(lambda node=node, edge=edge: re.search(
                rf'queue="deferred"\}} {len(tokens[edge])}$', _metrics(node), re.M) is not None,
                f"the deferred mail in the metrics of {edge}", 40)
        _wait(lambda: re.search(r'^mailfleet_postfix_up\{[^}]*\} 0$', _metrics(delivery), re.M) is not None,
              f"the delivery tier down in the metrics of {DELIVERY_NAME}", 40)
        down = _status_playbook()
        assert down.returncode != 0, down.stdout[-3000:]
        for edge, node in edges.items():
            reason = _deferred(node)[0]["recipients"][0]["delay_reason"]
            row = next((line for line in down.stdout.splitlines()
                        if re.match(rf"[\s\"'-]*{re.escape(edge)}\s+edge\s", line)), "")
            assert re.search(rf"\bdeferred {len(tokens[edge])}\b", row), down.stdout[-3000:]
            assert f"deferred: {reason[:60]}" in row, f"{reason!r} not in {row!r}"
        assert re.search(rf"{re.escape(DELIVERY_NAME)}\s+delivery\s.*\bdown\b", down.stdout), down.stdout[-3000:]
    finally:
        started = delivery.run(f"systemctl start {unit}")
    assert started.rc == 0, started.stderr
    for node in edges.values():
        node.run("postqueue -c /etc/postfix -f")
    for edge, node in edges.items():
        _wait(lambda node=node: _queued(node) == 0, f"the queue of {edge} to drain", 120)
    for subject in (s for subjects in tokens.values() for s in subjects):
        found = delivery.run(f"for i in $(seq 30); do grep -rqsF {subject} {MAILDIR} && exit 0; sleep 1; done; exit 1")
        assert found.rc == 0, f"{subject} queued during the outage is not in {MAILDIR} on {DELIVERY_NAME}"
    up = _status_playbook()
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-2000:]
