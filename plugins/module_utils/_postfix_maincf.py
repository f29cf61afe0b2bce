# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""main.cf as a lossless document of ``name = value`` parameters.

Private to the mailfleet.postfix collection; the API may change without notice.

Postfix reads main.cf with the same logical-line rules as master.cf
(util/readlline.c): continuation lines start with whitespace, comment and blank
lines do not end a parameter, and the last definition of a name wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from ._postfix_mastercf import _content, _is_blank, _is_comment, _is_continuation, shown, split_physical

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")  # fullmatch: a trailing newline is not part of a name
_SPACE = " \t\r\n"


class MainCfError(ValueError):
    """A main.cf problem, located by file and line."""

    def __init__(self, message: str, *, path: str = "main.cf", line: Optional[int] = None, name: Optional[str] = None) -> None:
        self.path = path
        self.line = line
        self.name = name
        where = f"{path} line {line}" if line is not None else path
        super().__init__(f"{where}: {message}")


@dataclass
class Parameter:
    """One ``name = value`` definition and the physical lines it spans."""

    lines: list[str]
    first_line: int = 0

    @property
    def members(self) -> list[str]:
        return [_content(x) for i, x in enumerate(self.lines) if i == 0 or _is_continuation(_content(x))]

    @property
    def name(self) -> str:
        return self.members[0].split("=", 1)[0].strip(_SPACE)

    @property
    def value(self) -> str:
        """The value as Postfix sees it: joined lines, outer whitespace trimmed."""
        joined = "".join(self.members)
        return joined.split("=", 1)[1].strip(_SPACE)


def normalize_value(value: str) -> str:
    """Whitespace-insensitive form used to decide whether a value changed."""
    return " ".join(value.split())


def format_value(value: Any) -> str:
    """Ansible data to main.cf syntax: booleans as yes/no, lists comma-joined."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, Mapping):
        raise ValueError("a main.cf value must be a string, number, boolean or list, not a mapping")
    text = str(value)
    if "\n" in text:
        raise ValueError("a main.cf value cannot contain a newline")
    if "\0" in text:
        raise ValueError("a main.cf value cannot contain a NUL byte (Postfix would ignore the rest of the line)")
    return text.strip(_SPACE)


@dataclass
class MainCf:
    blocks: list[Any] = field(default_factory=list)  # Parameter, or list[str] of text lines
    path: str = "main.cf"

    @classmethod
    def parse(cls, text: str, *, path: str = "main.cf") -> MainCf:
        if "\0" in text:
            # Postfix reads a line as a C string: whatever follows a NUL byte is silently lost.
            raise MainCfError("a NUL byte; Postfix would ignore the rest of the line", path=path,
                              line=text.count("\n", 0, text.index("\0")) + 1)
        doc = cls(path=path)
        lines = split_physical(text)
        idx = 0
        while idx < len(lines):
            content = _content(lines[idx])
            if _is_blank(content) or _is_comment(content):
                doc._text(lines[idx])
                idx += 1
                continue
            if _is_continuation(content):
                raise MainCfError("continuation line before any parameter; expected 'name = value'", path=path, line=idx + 1)
            name, sep, _value = content.partition("=")
            if not sep:
                raise MainCfError(f"'{content.strip()}' has no '='; expected 'name = value'", path=path, line=idx + 1)
            if not _NAME_RE.fullmatch(name.strip(_SPACE)):
                raise MainCfError(f"'{shown(name.strip())}' is not a valid parameter name", path=path, line=idx + 1)
            end, last = idx + 1, idx
            while end < len(lines):
                nxt = _content(lines[end])
                if _is_continuation(nxt):
                    last = end
                elif not (_is_blank(nxt) or _is_comment(nxt)):
                    break
                end += 1
            doc.blocks.append(Parameter(lines[idx:last + 1], first_line=idx + 1))
            idx = last + 1
        return doc

    def _text(self, line: str) -> None:
        if self.blocks and isinstance(self.blocks[-1], list):
            self.blocks[-1].append(line)
        else:
            self.blocks.append([line])

    def render(self) -> str:
        return "".join("".join(b.lines if isinstance(b, Parameter) else b) for b in self.blocks)

    def parameters(self) -> dict[str, str]:
        """Effective values: the last definition of each name."""
        return {p.name: p.value for p in self.blocks if isinstance(p, Parameter)}

    def get(self, name: str) -> Optional[str]:
        return self.parameters().get(name)

    def _definitions(self, name: str) -> list[Parameter]:
        return [p for p in self.blocks if isinstance(p, Parameter) and p.name == name]

    def _eol(self) -> str:
        first = self.render().split("\n", 1)[0]
        return "\r\n" if first.endswith("\r") else "\n"

    def set(self, name: str, value: Optional[str]) -> bool:
        """Set (or with None remove) one parameter; True when the text changed."""
        if not _NAME_RE.fullmatch(name):
            raise MainCfError(f"'{shown(name)}' is not a valid parameter name", path=self.path, name=name)
        found = self._definitions(name)
        if value is None:
            if not found:
                return False
            self.blocks = [b for b in self.blocks if b not in found]
            return True
        if found and normalize_value(found[-1].value) == normalize_value(value):
            return False
        eol = self._eol()
        line = f"{name} = {value}" if value else f"{name} ="
        if found:
            last = found[-1]
            # Comment lines inside a multi-line value are kept, after the new line.
            inner = [x for i, x in enumerate(last.lines) if i > 0 and not _is_continuation(_content(x))]
            last.lines = [line + eol] + inner if inner else [line + _eol_of(last.lines[-1])]
            return True
        render = self.render()
        if render and not render.endswith("\n"):
            self._append_newline(eol)
        self.blocks.append(Parameter([line + eol]))
        return True

    def _append_newline(self, eol: str) -> None:
        tail = self.blocks[-1]
        if isinstance(tail, Parameter):
            tail.lines[-1] += eol
        else:
            tail[-1] += eol


def _eol_of(line: str) -> str:
    if line.endswith("\r\n"):
        return "\r\n"
    return "\n" if line.endswith("\n") else ""


def apply_settings(doc: MainCf, settings: Mapping[str, Any]) -> list[str]:
    """Apply a settings dict (None removes); return the names that changed."""
    changed = []
    for name, value in settings.items():
        try:
            text = None if value is None else format_value(value)
        except ValueError as exc:
            raise MainCfError(f"parameter '{shown(str(name))}': {exc}", path=doc.path, name=str(name)) from exc
        if doc.set(str(name), text):
            changed.append(str(name))
    return changed
