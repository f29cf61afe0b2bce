"""fleet_topology and instance_units filters: the adapters over _fleet_topology, and the topology through a real play."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.mailfleet.postfix.plugins.filter.fleet_topology import (
    FilterModule,
    fleet_topology,
    instance_units,
    listen_endpoint,
)
from ansible_collections.mailfleet.postfix.tests.unit.roles.role_play import needs_playbook, run_play


def test_filters_are_registered() -> None:
    assert set(FilterModule().filters()) == {"fleet_topology", "instance_units", "listen_endpoint"}


def test_listen_endpoint_refuses_what_is_no_listen_entry() -> None:
    assert listen_endpoint("[2001:db8::1]:25") == {"host": "2001:db8::1", "port": "25"}
    for bad in (25, "127.0.0.1:25\nX"):
        with pytest.raises(AnsibleFilterError, match="listen_endpoint expects a listen entry"):
            listen_endpoint(bad)


def test_filter_passes_the_arguments() -> None:
    got = fleet_topology({"mx": ["a"], "stores": ["b"]}, {"a": {"ansible_host": "192.0.2.1"}, "b": {"ansible_host": "10.0.0.2"}},
                         edge_group="mx", delivery_group="stores", relay_port="2525")
    assert got["a"]["edge"]["relay_transport"] == "relay:[10.0.0.2]:2525"
    assert got["b"]["delivery"]["clients"] == ["192.0.2.1/32"]


@pytest.mark.parametrize(("args", "kwargs", "fragment"), [
    (("edge", {}), {}, "expects the inventory's groups"),
    (({}, []), {}, "'hostvars' must be"),
    (({}, {}), {"relay_port": "smtp"}, "'relay_port' must be a port number"),
    (({}, {}), {"edge_group": ""}, "'edge_group' must be a group"),
    (({}, {}), {"host_vars": ["x"]}, "'host_vars' must be a mapping"),
])
def test_filter_refuses_bad_input(args: tuple[object, object], kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(AnsibleFilterError, match=fragment):
        fleet_topology(*args, **kwargs)  # type: ignore[arg-type]


def test_instance_units_filter() -> None:
    assert instance_units("postfix-edge")["holder"] == "postfix-edge-holder.service"
    assert "default" in instance_units("postfix-default")["error"]
    with pytest.raises(AnsibleFilterError):
        instance_units(["postfix-edge"])


PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Report the topology
      ansible.builtin.copy:
        content: "{{ groups | mailfleet.postfix.fleet_topology(hostvars, edge_group='mx', delivery_group='stores') | to_json }}"
        dest: "{{ report }}"
        mode: "0644"
"""


@needs_playbook
def test_through_ansible_with_real_hostvars(tmp_path: Path) -> None:
    """hostvars as Ansible passes them (templated on access): inventory values and templates both work."""
    done, report = run_play(tmp_path, PLAY, "localhost LOCAL\n[mx]\nmx1 postfix_edge_listen_address=2001:db8::25\n"
                            "mx2 ansible_host=192.0.2.11\n[stores]\nstore1 postfix_delivery_listen_address='{{ \"10.0.0.\" ~ 21 }}'\n")
    assert done.returncode == 0, done.stdout + done.stderr
    got = json.loads(report.read_text())
    assert got["mx1"]["edge"]["listen"] == ["[2001:db8::25]:25"]
    assert got["mx2"]["edge"]["relay_transport"] == "relay:[10.0.0.21]:25"
    assert got["store1"]["delivery"]["clients"] == ["[2001:db8::25]/128", "192.0.2.11/32"]
