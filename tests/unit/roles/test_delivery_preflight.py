"""The delivery role's preflight through ansible-playbook: a public listen address is refused unless allowed,
and an IPv6 edge address reaches mynetworks inside brackets."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ansible_collections.mailfleet.postfix.tests.unit.roles.role_play import needs_playbook, run_play

PLAY = """
- hosts: delivery
  gather_facts: false
  tasks:
    - name: Run the delivery profile's checks
      ansible.builtin.include_role:
        name: mailfleet.postfix.delivery
        tasks_from: preflight
        public: true
    - name: Report what the profile derived
      ansible.builtin.copy:
        content: "{{ {'inet_interfaces': __postfix_delivery_main_cf.inet_interfaces,
                      'mynetworks': __postfix_delivery_main_cf.mynetworks} | to_json }}"
        dest: "{{ report }}"
        mode: "0644"
"""


def run(tmp_path: Path, *, host_vars: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    return run_play(tmp_path, PLAY, f"[delivery]\nstore1 LOCAL {host_vars}\n"
                    "[edge]\nmx1 postfix_edge_listen_address=2001:db8::25\nmx2 postfix_edge_listen_address=192.0.2.25\n")


pytestmark = needs_playbook


def test_a_public_address_is_refused_before_any_change(tmp_path: Path) -> None:
    done, report = run(tmp_path, host_vars="ansible_host=198.51.100.7")
    assert done.returncode != 0, done.stdout
    assert "198.51.100.7, a public address, not an internal one" in done.stdout, done.stdout
    assert "postfix_delivery_allow_public_listen" in done.stdout
    assert not report.exists()


def test_an_explicit_allow_and_ipv6_edges_in_brackets(tmp_path: Path) -> None:
    done, report = run(tmp_path, host_vars="ansible_host=198.51.100.7 postfix_delivery_allow_public_listen=true")
    assert done.returncode == 0, done.stdout + done.stderr
    got = json.loads(report.read_text())
    assert got["inet_interfaces"] == "198.51.100.7"
    assert got["mynetworks"] == "127.0.0.0/8 [::1]/128 [2001:db8::25]/128 192.0.2.25/32"


@pytest.mark.parametrize(("host_vars", "refused"), [
    ("ansible_host=10.1.2.3", ""),
    ("ansible_host=198.51.100.7 postfix_delivery_listen_address=fd00::25", ""),
    ("ansible_host=10.1.2.3 postfix_delivery_listen_address=100.64.1.1", "a shared address"),
    ("ansible_host=10.1.2.3 postfix_delivery_listen_address=mail.example.com", "mail.example.com, a host name, not an internal one"),
])
def test_internal_addresses_pass_others_are_refused(tmp_path: Path, host_vars: str, refused: str) -> None:
    done, _unused = run(tmp_path, host_vars=host_vars)
    if refused:
        assert done.returncode != 0 and refused in done.stdout, done.stdout
    else:
        assert done.returncode == 0, done.stdout + done.stderr
