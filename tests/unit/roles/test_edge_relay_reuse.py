"""The edge role's hop to the delivery tier through ansible-playbook: by default connections (TLS included) are
reused through tlsproxy and cached for the relay hosts; postfix_edge_relay_reuse=false restores Postfix's defaults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ansible_collections.mailfleet.postfix.tests.unit.roles.role_play import needs_playbook, run_play

PLAY = """
- hosts: edge
  gather_facts: false
  tasks:
    - name: Run the edge profile's checks
      ansible.builtin.include_role:
        name: mailfleet.postfix.edge
        tasks_from: preflight
        public: true
    - name: Report what the profile derived
      ansible.builtin.copy:
        content: "{{ {'main_cf': __postfix_edge_all_main_cf,
                      'master_cf': __postfix_edge_master_cf} | to_json }}"
        dest: "{{ report }}"
        mode: "0644"
"""


def derive(tmp_path: Path, host_vars: str = "") -> dict[str, Any]:
    done, report = run_play(tmp_path, PLAY,
                            f"[edge]\nmx1 LOCAL ansible_host=192.0.2.10 postfix_edge_domains='[\"example.org\"]' {host_vars}\n"
                            "[delivery]\nstore1 ansible_host=10.0.0.21\nstore2 postfix_delivery_listen_address=fd00::25\n")
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(report.read_text())
    return result


def tlsproxy(master_cf: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in master_cf if e["service"] == "tlsproxy" and e["type"] == "unix")


pytestmark = needs_playbook


def test_reuse_is_the_default_and_keeps_tls_for_the_relay_hosts(tmp_path: Path) -> None:
    got = derive(tmp_path)
    main_cf = got["main_cf"]
    assert main_cf["relay_transport"] == "relay:[10.0.0.21]:25, [fd00::25]:25"
    assert main_cf["smtp_tls_connection_reuse"] is True
    # Bare names, as smtp(8) matches them; an IPv6 literal would be read as a lookup table.
    assert main_cf["smtp_connection_cache_destinations"] == "10.0.0.21"
    # The hop's TLS level is not the role's to lower.
    assert "smtp_tls_security_level" not in main_cf
    proxy = tlsproxy(got["master_cf"])
    assert (proxy["state"], proxy["command"], proxy["chroot"]) == ("present", "tlsproxy", "y")


def test_reuse_off_restores_postfix_defaults(tmp_path: Path) -> None:
    got = derive(tmp_path, "postfix_edge_relay_reuse=false")
    main_cf = got["main_cf"]
    assert main_cf["smtp_tls_connection_reuse"] is None
    assert main_cf["smtp_connection_cache_destinations"] is None
    assert tlsproxy(got["master_cf"])["state"] == "disabled"


def test_postscreen_keeps_tlsproxy_without_reuse(tmp_path: Path) -> None:
    got = derive(tmp_path, "postfix_edge_relay_reuse=false postfix_edge_postscreen=true")
    assert tlsproxy(got["master_cf"])["state"] == "present"
