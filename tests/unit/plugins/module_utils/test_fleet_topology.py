"""The fleet's topology from the inventory: instances, listen addresses, relay hops, accepted clients, errors."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils._fleet_topology import (
    instance_units,
    listen_endpoint,
    listen_entry,
    topology,
)

FACTS_10_0_0_5 = {"default_ipv4": {"address": "10.0.0.5"}}


def test_one_host_with_both_tiers() -> None:
    got = topology({"edge": ["mx1"], "delivery": ["mx1"]}, {"mx1": {"ansible_host": "192.0.2.10"}})["mx1"]
    edge, delivery = got["edge"], got["delivery"]
    assert edge["colocated"] and delivery["colocated"]
    assert edge["instance"]["name"] == "postfix-edge" and edge["instance"]["config_dir"] == "/etc/postfix-edge"
    assert edge["instance"]["short_name"] == "edge"
    assert (edge["instance"]["master_unit"], edge["instance"]["target"], edge["instance"]["holder"]) == (
        "postfix-edge-master.service", "postfix-edge.target", "postfix-edge-holder.service")
    assert delivery["instance"]["name"] == "-" and delivery["instance"]["short_name"] == "default"
    assert delivery["instance"]["config_dir"] == "/etc/postfix"
    assert edge["address"] == "192.0.2.10" and edge["listen"] == ["192.0.2.10:25"]
    assert delivery["address"] == "127.0.0.1" and delivery["listen"] == ["127.0.0.1:25"]
    assert edge["relay_hosts"] == ["127.0.0.1"]
    assert edge["relay_transport"] == "relay:[127.0.0.1]:25"
    assert edge["reuse_destinations"] == ["127.0.0.1"]
    assert delivery["clients"] == ["192.0.2.10/32"]
    assert delivery["smtpd_hostname"] == "delivery.mx1.invalid"
    assert edge["errors"] == [] and delivery["errors"] == []
    assert edge["facts_needed"] == [] and delivery["facts_needed"] == []


def test_two_edges_and_one_delivery_host() -> None:
    groups = {"edge": ["mx1", "mx2"], "delivery": ["store1"], "client": ["c1"]}
    hostvars: dict[str, dict[str, Any]] = {
        "mx1": {"ansible_host": "192.0.2.10"},
        "mx2": {"ansible_host": "mx2.example.org", "ansible_facts": {"default_ipv4": {"address": "192.0.2.11"}}},
        "store1": {"ansible_host": "store1.internal", "ansible_facts": FACTS_10_0_0_5},
        "c1": {},
    }
    got = topology(groups, hostvars, relay_port=2525)
    assert list(got) == ["mx1", "mx2", "store1"]
    assert set(got["mx1"]) == {"edge"} and set(got["store1"]) == {"delivery"}
    for edge in ("mx1", "mx2"):
        view = got[edge]["edge"]
        assert not view["colocated"] and view["instance"]["name"] == "-"
        assert view["relay_hosts"] == ["10.0.0.5"] and view["relay_nexthop"] == "[10.0.0.5]:2525"
    assert got["mx2"]["edge"]["listen"] == ["192.0.2.11:25"]
    delivery = got["store1"]["delivery"]
    assert delivery["address"] == "10.0.0.5" and delivery["smtpd_hostname"] == ""
    assert delivery["clients"] == ["192.0.2.10/32", "192.0.2.11/32"]


def test_relay_hosts_keep_the_order_and_fallbacks() -> None:
    """A co-located delivery first; then listen address, IPv4 ansible_host, default IPv4, inventory name."""
    groups = {"edge": ["mx1"], "delivery": ["s1", "s2", "s3", "mx1", "s4"]}
    hostvars: dict[str, dict[str, Any]] = {
        "mx1": {"ansible_host": "192.0.2.10", "postfix_delivery_listen_address": "127.0.0.2"},
        "s1": {"postfix_delivery_listen_address": "10.0.0.1", "ansible_host": "10.9.9.9"},
        "s2": {"ansible_host": "10.0.0.2", "ansible_facts": FACTS_10_0_0_5},
        "s3": {"ansible_host": "s3.internal", "ansible_facts": FACTS_10_0_0_5},
        "s4": {"ansible_host": "s4.internal"},
    }
    edge = topology(groups, hostvars)["mx1"]["edge"]
    assert edge["relay_hosts"] == ["127.0.0.2", "10.0.0.1", "10.0.0.2", "10.0.0.5", "s4"]
    assert edge["facts_needed"] == ["s4"]  # only the host nothing else gives an address


def test_explicit_relay_hosts_win_and_need_no_facts() -> None:
    got = topology({"delivery": ["s1"]}, {"mx1": {"ansible_host": "192.0.2.10"}, "s1": {}}, host="mx1",
                   host_vars={"postfix_edge_relay_hosts": ["relay.internal", "fd00::25"]})["mx1"]["edge"]
    assert got["relay_transport"] == "relay:[relay.internal]:25, [fd00::25]:25"
    assert got["reuse_destinations"] == ["relay.internal"]
    assert got["facts_needed"] == []


def test_ipv6_addresses_are_bracketed_where_postfix_needs_it() -> None:
    groups = {"edge": ["mx1"], "delivery": ["s1"]}
    hostvars = {"mx1": {"postfix_edge_listen_address": "2001:db8::25"}, "s1": {"postfix_delivery_listen_address": "fd00::25"}}
    got = topology(groups, hostvars)
    assert got["mx1"]["edge"]["listen"] == ["[2001:db8::25]:25"]
    assert got["mx1"]["edge"]["relay_transport"] == "relay:[fd00::25]:25"
    assert got["mx1"]["edge"]["reuse_destinations"] == []  # smtp(8) would read fd00::25 as a table
    assert got["s1"]["delivery"]["listen"] == ["[fd00::25]:25"]
    assert got["s1"]["delivery"]["clients"] == ["[2001:db8::25]/128"]


def test_an_ipv6_ansible_host_is_not_taken_as_today() -> None:
    """As the roles did: only digits and dots in ansible_host count as an address."""
    got = topology({"edge": ["mx1"]}, {"mx1": {"ansible_host": "2001:db8::25"}})["mx1"]["edge"]
    assert got["address"] == "" and got["facts_needed"] == ["mx1"]


def test_custom_group_names() -> None:
    groups = {"mx": ["a", "b"], "stores": ["c"], "edge": ["x"], "delivery": ["y"]}
    hostvars = {h: {"ansible_host": f"10.0.0.{i}"} for i, h in enumerate("abcxy", 1)}
    got = topology(groups, hostvars, edge_group="mx", delivery_group="stores")
    assert list(got) == ["a", "b", "c"]
    assert got["a"]["edge"]["relay_hosts"] == ["10.0.0.3"]
    assert got["c"]["delivery"]["clients"] == ["10.0.0.1/32", "10.0.0.2/32"]


def test_the_roles_host_is_described_in_both_tiers_with_its_own_values() -> None:
    groups = {"edge": ["mx1"], "delivery": ["s1"]}
    hostvars: dict[str, dict[str, Any]] = {"mx1": {"postfix_edge_listen_address": "192.0.2.10"}, "s1": {"ansible_host": "10.0.0.1"}}
    own = {"postfix_edge_listen_address": "192.0.2.99", "postfix_edge_instance": "postfix-mx"}
    got = topology(groups, hostvars, host="mx1", host_vars=own)
    assert list(got) == ["mx1"] and set(got["mx1"]) == {"edge", "delivery"}
    assert got["mx1"]["edge"]["address"] == "192.0.2.99"
    assert got["mx1"]["edge"]["instance"]["config_dir"] == "/etc/postfix-mx"


@pytest.mark.parametrize(("groups", "hostvars", "tier", "fragments"), [
    ({"edge": ["mx1"], "delivery": ["s1"]}, {"mx1": {}, "s1": {"ansible_host": "10.0.0.1"}}, "edge",
     ["mx1: the edge has no address", "postfix_edge_listen_address"]),
    ({"edge": ["mx1"], "delivery": ["s1"]}, {"mx1": {"ansible_host": "192.0.2.1"}, "s1": {}}, "delivery",
     ["s1: the delivery instance has no address", "postfix_delivery_listen_address"]),
    ({"edge": ["mx1"], "delivery": []}, {"mx1": {"ansible_host": "192.0.2.1"}}, "edge",
     ["edge host mx1 has no delivery target", "'delivery' (postfix_edge_delivery_group) is empty", "postfix_edge_relay_hosts"]),
    ({"edge": ["mx1"]}, {"mx1": {"ansible_host": "192.0.2.1"}}, "edge",
     ["'delivery' (postfix_edge_delivery_group) is missing"]),
    ({"edge": ["mx1"], "delivery": ["mx1"]}, {"mx1": {"postfix_edge_listen_address": "127.0.0.1"}}, "edge",
     ["mx1: the edge must listen on one address of its own", "cannot share an address"]),
    ({"edge": ["mx1"], "delivery": ["mx1"]}, {"mx1": {"postfix_edge_listen_address": "0.0.0.0"}}, "edge",
     ["not on every address"]),
    ({"edge": ["mx1"], "delivery": ["mx1"]}, {"mx1": {"ansible_host": "10.0.0.1", "postfix_delivery_listen_address": "10.0.0.1"}},
     "delivery", ["not where the edge instance on this host listens (10.0.0.1:25)", "cannot share an address"]),
    ({"delivery": ["s1"]}, {"s1": {"postfix_delivery_listen_address": "all"}}, "delivery", ["not on every address"]),
    ({"edge": ["mx1"], "delivery": ["mx1"]}, {"mx1": {"ansible_host": "192.0.2.1", "postfix_delivery_instance": "postfix-edge"}},
     "delivery", ["must not be the edge's instance"]),
    ({"edge": ["mx1"], "delivery": ["s1"]}, {"mx1": {"ansible_host": "192.0.2.1", "postfix_edge_instance": "postfix-default"},
                                             "s1": {"ansible_host": "10.0.0.1"}},
     "edge", ["mx1: postfix_edge_instance is not a valid instance name", "primary instance's units"]),
])
def test_errors_name_the_host_and_the_variable(groups: dict[str, list[str]], hostvars: dict[str, dict[str, Any]], tier: str,
                                               fragments: list[str]) -> None:
    host = groups.get(tier, ["mx1"])[0] if groups.get(tier) else "mx1"
    errors = " ".join(topology(groups, hostvars, host=host)[host][tier]["errors"])
    for fragment in fragments:
        assert fragment in errors, errors


def test_a_wildcard_edge_is_fine_alone() -> None:
    got = topology({"edge": ["mx1"], "delivery": ["s1"]}, {"mx1": {"postfix_edge_listen_address": "all"},
                                                           "s1": {"ansible_host": "10.0.0.1"}})
    assert got["mx1"]["edge"]["errors"] == []


def test_hosts_without_facts_are_listed_once_learned_they_are_used() -> None:
    groups = {"edge": ["mx1"], "delivery": ["s1"]}
    hostvars: dict[str, dict[str, Any]] = {"mx1": {}, "s1": {}}
    before = topology(groups, hostvars)
    assert before["mx1"]["edge"]["facts_needed"] == ["mx1", "s1"]
    assert before["s1"]["delivery"]["facts_needed"] == ["s1", "mx1"]
    hostvars["mx1"]["ansible_facts"] = {"default_ipv4": {"address": "192.0.2.10"}}
    hostvars["s1"]["ansible_facts"] = FACTS_10_0_0_5
    after = topology(groups, hostvars)
    assert after["mx1"]["edge"]["facts_needed"] == [] and after["mx1"]["edge"]["relay_hosts"] == ["10.0.0.5"]
    assert after["s1"]["delivery"]["clients"] == ["192.0.2.10/32"]


@pytest.mark.parametrize(("name", "short", "master", "target", "holder", "config_dir"), [
    ("-", "default", "postfix-default-master.service", "postfix-default.target", "postfix-default-holder.service", "/etc/postfix"),
    ("", "default", "postfix-default-master.service", "postfix-default.target", "postfix-default-holder.service", "/etc/postfix"),
    ("postfix-edge", "edge", "postfix-edge-master.service", "postfix-edge.target", "postfix-edge-holder.service", "/etc/postfix-edge"),
    # systemd escapes '-' inside the short name: the modules name the units so, and so must the roles.
    ("postfix-out-1", "out-1", "postfix-out\\x2d1-master.service", "postfix-out\\x2d1.target", "postfix-out\\x2d1-holder.service",
     "/etc/postfix-out-1"),
])
def test_instance_units_as_the_modules_name_them(name: str, short: str, master: str, target: str, holder: str,
                                                 config_dir: str) -> None:
    got = instance_units(name)
    assert (got["short_name"], got["master_unit"], got["target"], got["holder"], got["config_dir"], got["error"]) == (
        short, master, target, holder, config_dir, "")


@pytest.mark.parametrize("name", ["postfix-default", "edge", "postfix-", "postfix-..", "postfix-a b", "postfix-x\n", "postfix--x"])
def test_instance_units_refuse_what_the_modules_refuse(name: str) -> None:
    got = instance_units(name)
    assert got["error"] and got["master_unit"] == "" and got["target"] == ""


def test_listen_entry() -> None:
    assert listen_entry("192.0.2.1") == "192.0.2.1:25"
    assert listen_entry("2001:db8::1", 2525) == "[2001:db8::1]:2525"
    assert listen_entry("mx.example.org") == "mx.example.org:25"


@pytest.mark.parametrize(("listen", "host", "port"), [
    ("192.0.2.25:25", "192.0.2.25", "25"),
    ("[2001:db8::25]:25", "2001:db8::25", "25"),
    ("0.0.0.0:587", "127.0.0.1", "587"),
    ("[::]:25", "127.0.0.1", "25"),
    ("*:25", "127.0.0.1", "25"),
    ("2525", "127.0.0.1", "2525"),
])
def test_listen_endpoint_probes_wildcards_on_loopback(listen: str, host: str, port: str) -> None:
    assert listen_endpoint(listen) == {"host": host, "port": port}
    if host != "127.0.0.1":
        assert listen_endpoint(listen_entry(host, int(port))) == {"host": host, "port": port}


# What a host reports about itself is hostile input: an edge host faces the internet.
@pytest.mark.parametrize("learned", ["0.0.0.0/0", "10.0.0.0/8", "cidr:/etc/postfix/everyone", "any.example", "1.2.3"])
def test_an_edge_host_s_facts_cannot_widen_the_delivery_tier_s_clients(learned: str) -> None:
    facts = {"default_ipv4": {"address": learned}}
    hostvars: dict[str, Any] = {"e1": {"ansible_host": "mx1.example.net", "ansible_facts": facts},
                                "d1": {"ansible_host": "10.0.0.5"}}
    delivery = topology({"edge": ["e1"], "delivery": ["d1"]}, hostvars)["d1"]["delivery"]
    assert delivery["clients"] == []
    assert any("e1: its default IPv4 address" in e and "set postfix_edge_listen_address" in e
               for e in delivery["errors"]), delivery["errors"]


def test_a_delivery_host_s_facts_cannot_add_a_relay_target() -> None:
    facts = {"default_ipv4": {"address": "10.0.0.5]:25, [198.51.100.7"}}
    hostvars: dict[str, Any] = {"e1": {"ansible_host": "192.0.2.10"},
                                "d1": {"ansible_host": "db.internal", "ansible_facts": facts}}
    edge = topology({"edge": ["e1"], "delivery": ["d1"]}, hostvars)["e1"]["edge"]
    assert "198.51.100.7" not in edge["relay_transport"] and edge["relay_hosts"] == ["d1"]
    assert any("d1: its default IPv4 address" in e for e in edge["errors"]), edge["errors"]


@pytest.mark.parametrize(("variable", "value"), [
    ("postfix_edge_relay_hosts", ["10.0.0.5]:25, [198.51.100.7"]),
    ("postfix_edge_listen_address", "192.0.2.1, 0.0.0.0"),
])
def test_given_addresses_are_one_address_or_host_name(variable: str, value: object) -> None:
    hostvars: dict[str, Any] = {"e1": {"ansible_host": "192.0.2.10", variable: value}, "d1": {"ansible_host": "10.0.0.5"}}
    edge = topology({"edge": ["e1"], "delivery": ["d1"]}, hostvars)["e1"]["edge"]
    assert any(f"e1: {variable}" in e and "neither an IP address nor a host name" in e for e in edge["errors"])


def test_an_edge_listening_everywhere_gives_no_client_entry() -> None:
    hostvars: dict[str, Any] = {"e1": {"postfix_edge_listen_address": "0.0.0.0"}, "d1": {"ansible_host": "10.0.0.5"}}
    delivery = topology({"edge": ["e1"], "delivery": ["d1"]}, hostvars)["d1"]["delivery"]
    assert delivery["clients"] == [] and any("set postfix_delivery_mynetworks" in e for e in delivery["errors"])
