# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleet_topology, instance_units, listen_endpoint (docs: the .yml files next to this one)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from ansible.errors import AnsibleFilterError

from ansible_collections.mailfleet.postfix.plugins.module_utils._fleet_topology import instance_units as _instance_units
from ansible_collections.mailfleet.postfix.plugins.module_utils._fleet_topology import listen_endpoint as _endpoint
from ansible_collections.mailfleet.postfix.plugins.module_utils._fleet_topology import topology


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise AnsibleFilterError(f"fleet_topology: '{what}' must be a group or host name, got {value!r}")
    return value


def fleet_topology(groups: Any, hostvars: Any, edge_group: str = "edge", delivery_group: str = "delivery",
                   relay_port: Any = 25, host: str = "", host_vars: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Host -> its edge and delivery instances, addresses, relay hops and accepted clients."""
    if not isinstance(groups, Mapping):
        raise AnsibleFilterError(f"fleet_topology expects the inventory's groups (a mapping), got {type(groups).__name__}")
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError(f"fleet_topology: 'hostvars' must be the inventory's host variables, got {type(hostvars).__name__}")
    if host_vars is not None and not isinstance(host_vars, Mapping):
        raise AnsibleFilterError(f"fleet_topology: 'host_vars' must be a mapping, got {type(host_vars).__name__}")
    try:
        port = int(relay_port)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"fleet_topology: 'relay_port' must be a port number, got {relay_port!r}") from exc
    return topology(groups, hostvars, edge_group=_name(edge_group, "edge_group"),
                    delivery_group=_name(delivery_group, "delivery_group"), relay_port=port,
                    host=str(host or ""), host_vars=host_vars)


def instance_units(name: Any) -> dict[str, Any]:
    """An instance's short name, default config directory and unit names; 'error' says why a name is refused."""
    if not isinstance(name, str):
        raise AnsibleFilterError(f"instance_units expects an instance name as text, got {type(name).__name__}")
    return _instance_units(name)


def listen_endpoint(listen: Any) -> dict[str, str]:
    """host and port to connect to for one listen entry of an instance."""
    if not isinstance(listen, str) or any(c in listen for c in "\0\n\r"):
        raise AnsibleFilterError(f"listen_endpoint expects a listen entry as text (ADDR:PORT), got {listen!r}")
    return _endpoint(listen)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"fleet_topology": fleet_topology, "instance_units": instance_units, "listen_endpoint": listen_endpoint}
