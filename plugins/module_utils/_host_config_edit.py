# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""main.cf and master.cf edits as the postconf and master modules make them.

Private to the mailfleet.postfix collection; the API may change without notice.

An edit is a pure function of the file's text (``edit_main``, ``edit_master``); ``apply_edit``
reads the file, validates and writes the result through ``_host_config`` (check mode runs the same
validation) and turns its ``Outcome`` into the module's result; ``run_module`` is a module's whole
run after its argument spec.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Optional, Sequence

from ._host import Host
from ._host_config import FileOpsError, check_programs, read_config, write_config
from ._postfix_maincf import MainCf, MainCfError, apply_settings
from ._postfix_mastercf import MasterCf, MasterCfError

# (text, path) -> (new text, what changed)
Edit = Callable[[str, str], "tuple[str, list[str]]"]


def edit_main(text: str, settings: Mapping[str, Any], *, path: str) -> tuple[str, list[str]]:
    """Apply settings (None removes a parameter) to main.cf text; the new text and the changed names."""
    doc = MainCf.parse(text, path=path)
    changed = apply_settings(doc, settings)
    after = doc.render()
    return after, changed if after != text else []


def edit_master(text: str, specs: Sequence[Mapping[str, Any]], *, path: str) -> tuple[str, list[str]]:
    """Apply entry specs to master.cf text; the new text and the changed entries (service/type)."""
    doc = MasterCf.parse(text, path=path)
    changed = []
    for index, spec in enumerate(specs):
        spec = {key: value for key, value in spec.items() if value is not None}
        try:
            if doc.apply(spec):
                changed.append(f"{spec['service']}/{spec['type']}")
        except MasterCfError as exc:
            if len(specs) == 1:
                raise
            where = f"entries[{index}] ({spec.get('service')}/{spec.get('type')})"
            raise MasterCfError(
                f"{where}: {exc.reason}", path=exc.path, line=exc.line, field_name=exc.field_name, value=exc.value
            ) from exc
    after = doc.render()
    if after == text:
        return text, []
    # Postfix accepts duplicates (the last entry wins): refuse only those this edit would create.
    MasterCf.parse(after, path=path).validate_edit(MasterCf.parse(text, path=path))
    return after, list(dict.fromkeys(changed))


def apply_edit(host: Optional[Host], *, config_dir: str, name: str, edit: Edit, key: str, backup: bool,
               check_mode: bool, diff: bool) -> tuple[dict[str, Any], list[str]]:
    """Edit config_dir/name, validate and write it; the module's result and Postfix's warnings.

    ``key`` names the result's list of what changed (changed_parameters, changed_entries). A
    master.cf edit also checks that each changed entry's command is a program Postfix has."""
    path = os.path.join(config_dir, name)
    before = read_config(config_dir, name)
    after, changed = edit(before, path)
    extra = [check_programs(config_dir, after, changed, path=path)] if name == "master.cf" else []
    outcome = write_config(host, config_dir=config_dir, contents={name: after}, backup=backup, check_mode=check_mode)
    verb = "would change" if check_mode else "changed"
    result: dict[str, Any] = {
        "changed": bool(changed),
        key: changed,
        "msg": f"{path}: {verb} {', '.join(changed)}" if changed else f"{path}: no change needed",
    }
    if changed:
        result["checks"] = outcome.checks + extra
    if outcome.backups:
        result["backup_file"] = outcome.backups[path]
    if diff:
        result["diff"] = {"before": before, "after": after, "before_header": path, "after_header": path}
    return result, outcome.warnings


def run_module(module: Any, *, name: str, edit: Edit, key: str) -> None:
    """Edit config_dir/name for an AnsibleModule with config_dir and backup: exit_json or fail_json."""
    try:
        result, warnings = apply_edit(module, config_dir=module.params["config_dir"], name=name, edit=edit, key=key,
                                      backup=module.params["backup"], check_mode=module.check_mode,
                                      diff=module._diff)
    except (MainCfError, MasterCfError, FileOpsError) as exc:
        module.fail_json(msg=str(exc))
        return
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)
