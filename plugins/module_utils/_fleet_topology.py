# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The split fleet's topology: which instances each host runs, where they listen, what they talk to.

Private to the mailfleet.postfix collection; the API may change without notice.

Input is what the inventory says (its groups and each host's variables, plain mappings); output is
plain data the roles and playbooks read (the ``fleet_topology`` filter). Pure: nothing here looks
at a host. Instance names and unit names come from the rule the modules use (``_postfix_semantics``,
``_masterless_units``, ``_classic_unit``), mynetworks entries from ``_postfix_instances``.

Rules (the roles' documented behaviour):

- a host in both groups runs the delivery tier as its primary instance and the edge as
  ``postfix-edge`` (unless ``postfix_edge_instance`` names another);
- an instance's address is its ``*_listen_address``, else (delivery on a host with an edge)
  127.0.0.1, else ``ansible_host`` when it is an IPv4 address, else the host's default IPv4
  address (``ansible_facts.default_ipv4``);
- the edge relays to a co-located delivery instance first, then to the delivery group's hosts in
  inventory order, each at its address or, with none known, its inventory name;
- the delivery tier accepts SMTP from loopback and the edge hosts' addresses (or
  ``postfix_delivery_mynetworks``).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Mapping, Optional, Sequence

from ._classic_unit import ClassicInstance
from ._masterless_units import Instance
from ._postfix_instances import mynetworks_entry
from ._postfix_semantics import INSTANCE_PREFIX, InstanceNameError, instance_name, split_host_port

PRIMARY = "-"
CO_LOCATED_EDGE = INSTANCE_PREFIX + "edge"
LOOPBACK = "127.0.0.1"
SMTP_PORT = 25
WILDCARDS = ("all", "0.0.0.0", "::", "*")
# A host name as the roles take one (a given listen address or relay host): no blank, comma, bracket
# or colon that would make it two entries, a port or a table in main.cf.
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")

EDGE_VARS = ("postfix_edge_listen_address", "postfix_edge_instance", "postfix_edge_relay_hosts", "postfix_edge_relay_port")
DELIVERY_VARS = ("postfix_delivery_listen_address", "postfix_delivery_instance", "postfix_delivery_mynetworks",
                 "postfix_delivery_smtpd_hostname")


def _ip(text: str, version: int = 0) -> Optional[str]:
    """text when it is one IP address (of that version), else None."""
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return None
    return text if version in (0, parsed.version) else None


def _add(errors: Optional[list[str]], message: str) -> None:
    if errors is not None and message not in errors:
        errors.append(message)


def _text(value: Any) -> str:
    """A variable as text; unset, None and false count as empty (Jinja's default('', true))."""
    return "" if value is None or value is False else str(value)


def _list(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [value]
    return [_text(v) for v in value]


def listen_entry(address: str, port: int = SMTP_PORT) -> str:
    """ADDRESS:PORT as the instance module's listen option reads it; IPv6 inside brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def listen_endpoint(listen: str) -> dict[str, str]:
    """Where to connect to see a listen entry (ADDR:PORT, [V6]:PORT or PORT) accept connections:
    a wildcard address is probed on the loopback address."""
    host, port = split_host_port(listen.strip())
    return {"host": LOOPBACK if host in ("", *WILDCARDS) else host, "port": port}


def instance_units(name: str) -> dict[str, Any]:
    """Names of one instance as the modules derive them from multi_instance_name: its short name,
    default config directory and units. A name the modules would refuse gives empty names and the
    reason in 'error'."""
    try:
        valid = instance_name(_text(name))
    except InstanceNameError as exc:
        return {"name": _text(name), "primary": False, "short_name": "", "config_dir": "", "master_unit": "",
                "target": "", "holder": "", "error": exc.reason}
    units = Instance(name=valid)
    primary = valid == PRIMARY
    return {
        "name": valid,
        "primary": primary,
        "short_name": units.short_name,
        "config_dir": "/etc/postfix" if primary else "/etc/" + valid,
        "master_unit": ClassicInstance(name=valid).unit,
        "target": units.target,
        "holder": units.holder + ".service",
        "error": "",
    }


def _instance_view(name: str, variable: str, host: str, errors: list[str]) -> dict[str, Any]:
    units = instance_units(name)
    if units["error"]:
        errors.append(f"{host}: {variable} is not a valid instance name: {units['error']}")
    return units


class Fleet:
    """The inventory as the roles see it: group members and each host's variables."""

    def __init__(self, groups: Mapping[str, Sequence[str]], hostvars: Mapping[str, Mapping[str, Any]], *,
                 edge_group: str = "edge", delivery_group: str = "delivery", relay_port: int = SMTP_PORT,
                 host: str = "", host_vars: Optional[Mapping[str, Any]] = None) -> None:
        self.groups = groups
        self.hostvars = hostvars
        self.edge_group = edge_group
        self.delivery_group = delivery_group
        self.relay_port = relay_port
        self.host = host
        self.host_vars = dict(host_vars or {})

    def members(self, group: str) -> list[str]:
        return [str(h) for h in self.groups.get(group) or []]

    def var(self, host: str, name: str) -> Any:
        if host == self.host and name in self.host_vars:
            return self.host_vars[name]
        hv = self.hostvars.get(host)
        return hv.get(name) if hv is not None else None

    def address_sources(self, host: str, listen_var: str, errors: Optional[list[str]] = None) -> tuple[str, str, str]:
        """The host's listen variable, ansible_host when it is an IPv4 address, its default IPv4 address.

        What a host reports about itself (its facts) is used only when it is one IPv4 address: an edge
        host is internet-facing, and its facts must not widen the delivery tier's clients or add a relay
        target. A given value is an address, a host name or (listen) a wildcard; others are errors."""
        given = _text(self.var(host, listen_var)).strip()
        ansible_host = _text(self.var(host, "ansible_host")).strip()
        facts = self.var(host, "ansible_facts") or {}
        default_ipv4 = facts.get("default_ipv4") or {} if isinstance(facts, Mapping) else {}
        learned = _text(default_ipv4.get("address")).strip() if isinstance(default_ipv4, Mapping) else ""
        if given and not (given in WILDCARDS or _ip(given) or _HOST_NAME.fullmatch(given)):
            _add(errors, f"{host}: {listen_var} is '{given}', which is neither an IP address nor a host name")
            given = ""
        if learned and _ip(learned, 4) is None:
            _add(errors, f"{host}: its default IPv4 address (ansible_facts.default_ipv4.address) is '{learned}', "
                         f"which is no IPv4 address; set {listen_var}")
            learned = ""
        return given, ansible_host if _ip(ansible_host, 4) else "", learned

    def edge_address(self, host: str, errors: Optional[list[str]] = None) -> str:
        return next((a for a in self.address_sources(host, "postfix_edge_listen_address", errors) if a), "")

    def delivery_address(self, host: str, *, colocated: bool, errors: Optional[list[str]] = None) -> str:
        given, ansible_host, learned = self.address_sources(host, "postfix_delivery_listen_address", errors)
        return given or (LOOPBACK if colocated else "") or ansible_host or learned

    def needs_facts(self, host: str, listen_var: str) -> bool:
        """Whether only the host's network facts can give it an address (and they are not known yet)."""
        given, ansible_host, _unused = self.address_sources(host, listen_var)
        facts = self.var(host, "ansible_facts") or {}
        return not given and not ansible_host and not (isinstance(facts, Mapping) and "default_ipv4" in facts)

    # ----------------------------------------------------------------------- the edge tier

    def edge(self, host: str) -> dict[str, Any]:
        errors: list[str] = []
        deliveries = self.members(self.delivery_group)
        colocated = host in deliveries
        name = _text(self.var(host, "postfix_edge_instance")) or (CO_LOCATED_EDGE if colocated else PRIMARY)
        units = _instance_view(name, "postfix_edge_instance", host, errors)
        port = self.var(host, "postfix_edge_relay_port")
        port = self.relay_port if port in (None, "") else port
        address = self.edge_address(host, errors)
        facts = [host] if self.needs_facts(host, "postfix_edge_listen_address") else []

        relay_hosts = [h.strip() for h in _list(self.var(host, "postfix_edge_relay_hosts"))]
        for bad in [h for h in relay_hosts if not (_ip(h) or _HOST_NAME.fullmatch(h))]:
            errors.append(f"{host}: postfix_edge_relay_hosts holds '{bad}', which is neither an IP address nor a "
                          "host name")
        if not relay_hosts:
            for other in deliveries:
                if other == host:  # the co-located delivery instance, the cheapest hop, first
                    relay_hosts.insert(0, self.delivery_address(host, colocated=True, errors=errors))
                    continue
                relay_hosts.append(self.delivery_address(other, colocated=False, errors=errors) or other)
                if self.needs_facts(other, "postfix_delivery_listen_address"):
                    facts.append(other)
        local_delivery = self.delivery_address(host, colocated=True) if colocated else ""

        if not address:
            errors.append(f"{host}: the edge has no address to listen on: set postfix_edge_listen_address, or "
                          "ansible_host to its IPv4 address, or let the play learn its default address "
                          "(ansible_facts.default_ipv4)")
        elif colocated and address in WILDCARDS:
            errors.append(f"{host}: the edge must listen on one address of its own (postfix_edge_listen_address is "
                          f"'{address}'), not on every address: the delivery instance on this host listens on "
                          f"{listen_entry(local_delivery)}")
        elif colocated and address == local_delivery:
            errors.append(f"{host}: the edge must listen on one address of its own (postfix_edge_listen_address is "
                          f"'{address}'), not where the delivery instance on this host listens "
                          f"({listen_entry(local_delivery)}); two instances on one host cannot share an address")
        if not relay_hosts:
            state = "empty" if self.delivery_group in self.groups else "missing"
            errors.append(f"edge host {host} has no delivery target: the inventory group '{self.delivery_group}' "
                          f"(postfix_edge_delivery_group) is {state}, and postfix_edge_relay_hosts is not set. "
                          "Add the delivery hosts to that group, or set postfix_edge_relay_hosts.")

        nexthop = ", ".join(f"[{h}]:{port}" for h in relay_hosts)
        return {
            "colocated": colocated,
            "instance": units,
            "address": address,
            "listen": [listen_entry(address)] if address else [],
            "relay_hosts": relay_hosts,
            "relay_nexthop": nexthop,
            "relay_transport": "relay:" + nexthop,
            # smtp(8) matches these without [] and port; an IPv6 literal would read as a table there.
            "reuse_destinations": [h for h in relay_hosts if ":" not in h],
            "facts_needed": facts,
            "errors": errors,
        }

    # ----------------------------------------------------------------------- the delivery tier

    def delivery(self, host: str) -> dict[str, Any]:
        errors: list[str] = []
        edges = self.members(self.edge_group)
        colocated = host in edges
        name = _text(self.var(host, "postfix_delivery_instance")) or PRIMARY
        units = _instance_view(name, "postfix_delivery_instance", host, errors)
        address = self.delivery_address(host, colocated=colocated, errors=errors)
        facts = [host] if not colocated and self.needs_facts(host, "postfix_delivery_listen_address") else []

        given = _list(self.var(host, "postfix_delivery_mynetworks"))
        clients = [mynetworks_entry(c) for c in given]
        if not given:
            for other in edges:
                edge_address = self.edge_address(other, errors)
                if edge_address in WILDCARDS:
                    # One edge listening everywhere cannot name the one address its mail comes from.
                    errors.append(f"{host}: edge host {other} listens on every address, so its mail may come from "
                                  "any of them: set postfix_delivery_mynetworks")
                elif edge_address:
                    clients.append(mynetworks_entry(edge_address))
                elif self.needs_facts(other, "postfix_edge_listen_address"):
                    facts.append(other)

        local_edge = self.edge_address(host) if colocated else ""
        edge_instance = _text(self.var(host, "postfix_edge_instance")) or CO_LOCATED_EDGE
        if not address:
            errors.append(f"{host}: the delivery instance has no address to listen on: set "
                          "postfix_delivery_listen_address, or ansible_host to its IPv4 address, or let the play "
                          "learn its default address (ansible_facts.default_ipv4)")
        elif address in WILDCARDS:
            errors.append(f"{host}: the delivery instance must listen on one internal address "
                          f"(postfix_delivery_listen_address is '{address}'), not on every address")
        elif colocated and address == local_edge:
            errors.append(f"{host}: the delivery instance must listen on one internal address "
                          f"(postfix_delivery_listen_address is '{address}'), not where the edge instance on this "
                          f"host listens ({listen_entry(local_edge)}); two instances on one host cannot share an address")
        if colocated and name == edge_instance:
            errors.append(f"{host}: on a host that is also an edge host the delivery instance must not be the edge's "
                          f"instance (postfix_delivery_instance and postfix_edge_instance are both '{name}')")

        smtpd_hostname = _text(self.var(host, "postfix_delivery_smtpd_hostname"))
        return {
            "colocated": colocated,
            "instance": units,
            "address": address,
            "listen": [listen_entry(address)] if address else [],
            "clients": clients,
            # An smtp client that sees its own myhostname in the greeting refuses the hop.
            "smtpd_hostname": smtpd_hostname or (f"delivery.{host}.invalid" if colocated else ""),
            "facts_needed": facts,
            "errors": errors,
        }

    def describe(self, host: str) -> dict[str, Any]:
        """The host's tiers: its own (``host``) both, others those whose group has them."""
        out: dict[str, Any] = {}
        if host == self.host or host in self.members(self.edge_group):
            out["edge"] = self.edge(host)
        if host == self.host or host in self.members(self.delivery_group):
            out["delivery"] = self.delivery(host)
        return out


def topology(groups: Mapping[str, Sequence[str]], hostvars: Mapping[str, Mapping[str, Any]], *,
             edge_group: str = "edge", delivery_group: str = "delivery", relay_port: int = SMTP_PORT,
             host: str = "", host_vars: Optional[Mapping[str, Any]] = None) -> dict[str, dict[str, Any]]:
    """Host -> its tiers ('edge', 'delivery'), each with its instance, addresses, peers and errors.

    With ``host`` (the host a role runs on), only that host, described in both tiers whatever its
    groups, with ``host_vars`` (the role's own values of its variables) over its inventory variables.
    """
    fleet = Fleet(groups, hostvars, edge_group=edge_group, delivery_group=delivery_group, relay_port=relay_port,
                  host=host, host_vars=host_vars)
    if host:
        return {host: fleet.describe(host)}
    hosts = dict.fromkeys(fleet.members(edge_group) + fleet.members(delivery_group))
    return {h: fleet.describe(h) for h in hosts}
