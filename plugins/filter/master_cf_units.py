# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""master_cf_units filter: master.cf -> systemd units of the master-less mode (docs: master_cf_units.yml)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from ansible.errors import AnsibleFilterError

from ansible_collections.mailfleet.postfix.plugins.module_utils._masterless_units import Instance, build_units
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import MasterCfError


def master_cf_units(data: Any, instance: Optional[Mapping[str, Any]] = None) -> dict[str, str]:
    """Unit file name -> content for master.cf text or master_cf_parse entries."""
    if not isinstance(data, (str, list, tuple)):
        raise AnsibleFilterError(
            f"master_cf_units expects master.cf text or a list of entries from master_cf_parse, got {type(data).__name__}"
        )
    if instance is not None and not isinstance(instance, Mapping):
        raise AnsibleFilterError(f"master_cf_units: 'instance' must be a mapping of facts, got {type(instance).__name__}")
    _check_facts(instance or {})
    try:
        facts = Instance.from_params(dict(instance or {}))
        return dict(build_units(str(data) if isinstance(data, str) else list(data), facts).units)
    except (MasterCfError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"master_cf_units: {exc}") from exc


_LISTS = ("supplementary_groups", "master_units", "root_daemons")
_PATHS = ("config_directory", "queue_directory", "data_directory", "daemon_directory", "command_directory",
          "runtime_directory", "libexec_directory", "python", "default_config_directory")


def _check_facts(instance: Mapping[str, Any]) -> None:
    """Facts as postconf prints them: text (numbers too), absolute directories, a numeric process limit."""
    for key, value in instance.items():
        if value is None or key not in Instance._fields and key != "multi_instance_name":
            continue  # postconf output holds many more parameters; only the used ones are checked
        if key in _LISTS and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise AnsibleFilterError(f"master_cf_units: instance fact '{key}' is a {type(value).__name__}; "
                                     "expected text, as postconf prints it")
        text = str(value)
        if any(c in text for c in "\0\n\r"):
            raise AnsibleFilterError(f"master_cf_units: instance fact '{key}' is {ascii(text)}: a line break or "
                                     "NUL byte")
        if key in _PATHS and text.strip() and not text.strip().startswith("/"):
            raise AnsibleFilterError(f"master_cf_units: instance fact '{key}' is '{text}'; expected an absolute path")
        if key in ("default_process_limit", "max_use") and not text.strip().isdigit():
            raise AnsibleFilterError(f"master_cf_units: instance fact '{key}' is '{text}'; expected a number")


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"master_cf_units": master_cf_units}
