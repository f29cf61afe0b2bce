# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""master_cf_parse, master_cf_render, master_cf_entry (docs: the .yml files next to this one)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import (
    DEFAULT_WIDTHS,
    FIELDS,
    MasterCf,
    MasterCfError,
    item_line,
    normalize_spec,
    render_entry,
    shown,
    split_physical,
)

# Keys of master_cf_parse items that describe, rather than define, an entry.
_META = ("kind", "line", "raw", "enabled")
_COMPARED = (*FIELDS, "args", "options", "enabled")


def master_cf_parse(text: Any, strict: bool = False) -> list[dict[str, Any]]:
    """master.cf text -> entry and text items, each with its line number and raw text."""
    if not isinstance(text, str):
        raise AnsibleFilterError(f"master_cf_parse expects master.cf text, got {type(text).__name__}")
    try:
        doc = MasterCf.parse(text)
        for entry in doc.entries(enabled=True):
            entry.validate()
        if strict:
            doc.validate(strict=True)
        return doc.to_list()
    except MasterCfError as exc:
        raise AnsibleFilterError(f"master_cf_parse: {exc}") from exc


def master_cf_render(items: Any) -> str:
    """Items from master_cf_parse (edited or not) -> master.cf text."""
    if isinstance(items, (str, bytes)) or not isinstance(items, (list, tuple)):
        raise AnsibleFilterError(f"master_cf_render expects a list of items from master_cf_parse, got {type(items).__name__}")
    try:
        layout = _layout(items)
        out = ""
        for index, item in enumerate(items):
            text = _render_item(index, item, layout)
            if out and not out.endswith("\n"):
                out += layout.eol()
            out += text
        for entry in MasterCf.parse(out).entries(enabled=True):
            entry.validate()
        return out
    except MasterCfError as exc:
        raise AnsibleFilterError(f"master_cf_render: {exc}") from exc


def master_cf_entry(entry: Any) -> str:
    """One entry dict -> its master.cf line(s) in column style."""
    if not isinstance(entry, Mapping):
        raise AnsibleFilterError(f"master_cf_entry expects an entry dict, got {type(entry).__name__}")
    try:
        return _fresh(entry)
    except MasterCfError as exc:
        raise AnsibleFilterError(f"master_cf_entry: {exc}") from exc


def _layout(items: list[Any] | tuple[Any, ...]) -> MasterCf:
    """The original document, for its column widths and line ending."""
    try:
        return MasterCf.parse("".join(i["raw"] for i in items if isinstance(i, Mapping) and isinstance(i.get("raw"), str)))
    except MasterCfError:
        return MasterCf()


def _render_item(index: int, item: Any, layout: MasterCf) -> str:
    if not isinstance(item, Mapping):
        raise MasterCfError(f"item {index} is a {type(item).__name__}, expected a mapping")
    try:
        _check_meta(item)
    except MasterCfError as exc:
        raise MasterCfError(f"item {index}: {exc.reason}", field_name=exc.field_name) from exc
    raw = item.get("raw")
    if item.get("kind", "entry") == "text":
        if not isinstance(raw, str):
            raise MasterCfError(f"item {index} is a text item without its 'raw' text")
        return raw
    if not isinstance(raw, str) or not raw:
        return _fresh(item, widths=layout.widths(), eol=layout.eol())
    original = MasterCf.parse(raw)
    entries = original.entries()
    if len(entries) != 1 or len(original.blocks) != 1:
        raise MasterCfError(f"item {index}: 'raw' must hold exactly one entry")
    current = entries[0].to_dict()
    if all(_same(item, current, key) for key in _COMPARED):
        return raw
    return _edit(original, current, item, index)


def _same(item: Mapping[str, Any], current: Mapping[str, Any], key: str) -> bool:
    if key not in item:
        return True
    want, have = item[key], current[key]
    if key == "args":
        return [str(a) for a in want or []] == have
    if key == "options":
        return {str(k): None if v is None else str(v) for k, v in (want or {}).items()} == have
    if key == "enabled":
        return bool(want) == have
    return str(want) == have


def _edit(doc: MasterCf, current: Mapping[str, Any], item: Mapping[str, Any], index: int) -> str:
    """Apply the changed fields through MasterCf.apply, so only what changed is rewritten."""
    if not (_same(item, current, "service") and _same(item, current, "type")):
        return _fresh({**current, **item}, widths=doc.widths(), eol=doc.eol())
    spec = {key: item[key] for key in (*FIELDS, "args", "options") if key in item}
    spec.update(service=current["service"], type=current["type"], purge_options="options" in item)
    spec["state"] = "present" if item.get("enabled", current["enabled"]) else "disabled"
    try:
        doc.apply(spec)
    except MasterCfError as exc:
        raise MasterCfError(f"item {index} ({current['service']}/{current['type']}): {exc.reason}") from exc
    return doc.render()


def _check_meta(item: Mapping[str, Any]) -> None:
    """The describing keys master_cf_parse adds: of the right type when given, never silently ignored."""
    item_line(item)
    if item.get("kind", "entry") not in ("entry", "text"):
        raise MasterCfError(f"'kind' is '{shown(str(item['kind']))}', expected entry or text", field_name="kind")
    if "enabled" in item and not isinstance(item["enabled"], bool):
        raise MasterCfError(f"'enabled' is '{shown(str(item['enabled']))}', expected a boolean", field_name="enabled")


def _fresh(entry: Mapping[str, Any], *, widths: tuple[int, ...] = DEFAULT_WIDTHS, eol: str = "\n") -> str:
    _check_meta(entry)
    spec = {key: value for key, value in entry.items() if key not in _META}
    want = normalize_spec(spec)
    if want["type"] == "inet" and want.get("private") is None:
        want["private"] = "n"
    if not want.get("command"):
        raise MasterCfError(f"field 'command' is missing in entry '{want['service']}/{want['type']}'", field_name="command")
    fields = {name: want.get(name) or "-" for name in FIELDS}
    options = {k: v for k, v in (want.get("options") or {}).items() if v is not None}
    body = {**fields, "args": want.get("args") or [], "options": options}
    text = render_entry(body, widths=widths, eol=eol)
    if entry.get("enabled", True) is False:
        text = "".join("#" + line for line in split_physical(text))
    return text


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "master_cf_parse": master_cf_parse,
            "master_cf_render": master_cf_render,
            "master_cf_entry": master_cf_entry,
        }
