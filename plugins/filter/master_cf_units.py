# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""master_cf_units filter: master.cf -> systemd units of the master-less mode (docs: master_cf_units.yml)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from ansible.errors import AnsibleFilterError

from ansible_collections.mailfleet.postfix.plugins.module_utils._mastercf import MasterCfError
from ansible_collections.mailfleet.postfix.plugins.module_utils._units import Instance, build_units


def master_cf_units(data: Any, instance: Optional[Mapping[str, Any]] = None) -> dict[str, str]:
    """Unit file name -> content for master.cf text or master_cf_parse entries."""
    if not isinstance(data, (str, list, tuple)):
        raise AnsibleFilterError(
            f"master_cf_units expects master.cf text or a list of entries from master_cf_parse, got {type(data).__name__}"
        )
    if instance is not None and not isinstance(instance, Mapping):
        raise AnsibleFilterError(f"master_cf_units: 'instance' must be a mapping of facts, got {type(instance).__name__}")
    try:
        facts = Instance.from_params(dict(instance or {}))
        return dict(build_units(str(data) if isinstance(data, str) else list(data), facts).units)
    except (MasterCfError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"master_cf_units: {exc}") from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"master_cf_units": master_cf_units}
