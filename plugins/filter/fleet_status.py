# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleet_status (docs: fleet_status.yml next to this one)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ansible.errors import AnsibleFilterError

from ansible_collections.mailfleet.postfix.plugins.module_utils._status_table import fleet_status as _fleet_status


def _limit(value: Any, name: str) -> Optional[int]:
    if value is None or value == "":
        return None
    try:
        limit = int(value)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"fleet_status: '{name}' must be a number or null, got {value!r}") from exc
    if limit < 0:
        raise AnsibleFilterError(f"fleet_status: '{name}' must not be negative, got {limit}")
    return limit


def fleet_status(hostvars: Any, hosts: Any, groups: Any, result: str = "mailfleet_status_result",
                 max_deferred: Any = None, max_active: Any = None, max_oldest_deferred_age: Any = None,
                 fail_on_degraded: Any = False) -> dict[str, Any]:
    """The status table of the hosts' registered instance_info results, problems first."""
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError(f"fleet_status expects the inventory's hostvars, got {type(hostvars).__name__}")
    if isinstance(hosts, (str, bytes)) or not isinstance(hosts, Sequence):
        raise AnsibleFilterError(f"fleet_status: 'hosts' must be a list of host names, got {hosts!r}")
    if not isinstance(groups, Mapping):
        raise AnsibleFilterError(f"fleet_status: 'groups' must be the inventory's groups, got {type(groups).__name__}")
    results = {}
    for host in hosts:
        found = hostvars[host].get(result) if host in hostvars else None
        results[str(host)] = found if isinstance(found, Mapping) else None
    limits = {"deferred": _limit(max_deferred, "max_deferred"), "active": _limit(max_active, "max_active"),
              "oldest_deferred_age": _limit(max_oldest_deferred_age, "max_oldest_deferred_age")}
    return _fleet_status(results, groups, limits, bool(fail_on_degraded))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"fleet_status": fleet_status}
