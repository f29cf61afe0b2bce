# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""master_cf_chroot_plan filter: what the chroot jail of an instance must hold (docs: master_cf_chroot_plan.yml)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ansible.errors import AnsibleFilterError
from ansible.utils.display import Display

from ansible_collections.mailfleet.postfix.plugins.module_utils._classic_chroot import (
    ChrootPlanError,
    HostFacts,
    plan_jail,
)
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_maincf import MainCf, MainCfError
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import MasterCfError


def master_cf_chroot_plan(
    data: Any,
    main: Optional[Any] = None,
    host: Optional[Mapping[str, Any]] = None,
    extra_files: Optional[Sequence[str]] = None,
) -> list[dict[str, Any]]:
    """Jail items (path, kind, source, reasons) for master.cf text or master_cf_parse entries."""
    if not isinstance(data, (str, list, tuple)):
        raise AnsibleFilterError(
            "master_cf_chroot_plan expects master.cf text or a list of entries from master_cf_parse, "
            f"got {type(data).__name__}"
        )
    if main is not None and not isinstance(main, (str, Mapping)):
        raise AnsibleFilterError(
            f"master_cf_chroot_plan: 'main' must be main.cf text or a mapping of parameters, got {type(main).__name__}"
        )
    if host is not None and not isinstance(host, Mapping):
        raise AnsibleFilterError(f"master_cf_chroot_plan: 'host' must be a mapping of host facts, got {type(host).__name__}")
    if extra_files is not None and (isinstance(extra_files, str) or not isinstance(extra_files, Sequence)):
        raise AnsibleFilterError("master_cf_chroot_plan: 'extra_files' must be a list of absolute paths")
    try:
        params = MainCf.parse(main).parameters() if isinstance(main, str) else dict(main or {})
        facts = HostFacts.from_dict(host) if host is not None else None
        plan = plan_jail(data if isinstance(data, str) else list(data), params, facts,
                         extra_files=list(extra_files or ()))
    except (ChrootPlanError, MasterCfError, MainCfError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"master_cf_chroot_plan: {exc}") from exc
    for warning in plan.warnings:
        Display().warning(f"master_cf_chroot_plan: {warning}")
    return [item.to_dict() for item in plan.items]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"master_cf_chroot_plan": master_cf_chroot_plan}
