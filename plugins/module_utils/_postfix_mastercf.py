# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""master.cf as a lossless document.

Private to the mailfleet.postfix collection; the API may change without notice.

The grammar follows master(8) (src/master/master_ent.c): logical lines are joined
from continuation lines (leading whitespace), comment and blank lines do not end
a logical line, the first eight fields are split on whitespace, later arguments
group whitespace inside ``{ }``. Rendering an untouched document gives back the
same bytes; an edit rewrites only the physical lines of the entry it touches.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:  # annotations only: the systemd generator imports this module at every boot
    from typing import Any, Callable, Iterable, Mapping, Optional, Union

TYPES = ("inet", "unix", "unix-dgram", "fifo", "pass")
BOOL_VALUES = ("y", "n", "-")
FIELDS = ("service", "type", "private", "unpriv", "chroot", "wakeup", "maxproc", "command")
STATES = ("present", "absent", "disabled")
# getopt(3) options of the server skeletons that take a value (src/master/*_server.c).
_OPTS_WITH_VALUE = frozenset("imnorst")
_SPACE = " \t\r\n"
# Character classes of the field checks: str methods instead of re (its import costs start-up time).
_DIGITS = "0123456789"
_ALNUM = _DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_PARAM_CHARS = _ALNUM + "_.-"
# known_tcp_ports (Postfix >= 3.6): these names and numbers are one inet service.
# Column style of the stock master.cf: "smtp      inet  n       -       y       -       -       smtpd".
DEFAULT_WIDTHS = (10, 6, 8, 8, 8, 8, 8)


class MasterCfError(ValueError):
    """A master.cf problem, located by file, line and field."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "master.cf",
        line: Optional[int] = None,
        field_name: Optional[str] = None,
        value: Optional[str] = None,
    ) -> None:
        self.path = path
        self.line = line
        self.field_name = field_name
        self.value = value
        self.reason = message
        where = f"{path} line {line}" if line is not None else path
        super().__init__(f"{where}: {message}")


def shown(value: str) -> str:
    """value for a one-line message: control characters (newline, NUL) escaped, the rest as it is."""
    return "".join(c if c >= " " and c != "\x7f" else ascii(c)[1:-1] for c in value)


def field_error(
    name: str, value: str, expected: str, *, path: str = "master.cf", line: Optional[int] = None
) -> MasterCfError:
    return MasterCfError(
        f"field '{name}' is '{shown(value)}'; expected {expected}",
        path=path,
        line=line,
        field_name=name,
        value=value,
    )


# --------------------------------------------------------------------------- lines


def split_physical(text: str) -> list[str]:
    """Split on LF only, keeping each line's ending (CR stays part of the line)."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _content(line: str) -> str:
    return line[:-1] if line.endswith("\n") else line


def _eol(line: str) -> str:
    return "\n" if line.endswith("\n") else ""


def _is_blank(content: str) -> bool:
    return content.strip(_SPACE) == ""


def _is_comment(content: str) -> bool:
    return content.lstrip(_SPACE).startswith("#")


def _is_continuation(content: str) -> bool:
    return content[:1] in (" ", "\t") and not _is_blank(content) and not _is_comment(content)


# --------------------------------------------------------------------------- tokens


class _Value:
    """Field-wise == and repr like @dataclass, whose import costs the generator start-up time.

    Unhashable (defining __eq__ sets __hash__ to None), as a mutable dataclass is.
    """

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self._fields)})"


class Token(_Value):
    """A token of the logical line and where it sits (block-relative line, columns); immutable."""

    __slots__ = _fields = ("text", "line", "start", "end", "spans_lines")
    text: str
    line: int
    start: int
    end: int
    spans_lines: bool

    def __init__(self, text: str, line: int, start: int, end: int, spans_lines: bool = False) -> None:
        init = object.__setattr__
        init(self, "text", text)
        init(self, "line", line)
        init(self, "start", start)
        init(self, "end", end)
        init(self, "spans_lines", spans_lines)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field '{name}'")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field '{name}'")

    def __hash__(self) -> int:
        return hash(self._values())


def _extpar(token: str) -> str:
    """Strip one level of braces like extpar(..., EXTPAR_FLAG_STRIP); raise on errors."""
    level = 0
    for pos, char in enumerate(token):
        if char == "{":
            level += 1
        elif char == "}":
            level -= 1
            if level == 0:
                if pos != len(token) - 1:
                    raise ValueError(f"syntax error after '}}' in \"{token}\"")
                return token[1:-1].strip(_SPACE)
    raise ValueError(f"missing '}}' in \"{token}\"")


def _split_nameval(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name = name.strip(_SPACE)
    if not sep:
        raise ValueError(f"missing '=' after attribute name in '-o {text}'")
    if not name:
        raise ValueError(f"missing attribute name in '-o {text}'")
    return name, value.strip(_SPACE)


def _needs_braces(value: str) -> bool:
    return any(c in value for c in _SPACE) or value.startswith("{") or value == ""


def format_arg(value: str) -> str:
    """One argv element in master.cf syntax (grouped when it holds whitespace)."""
    if value and not any(c in value for c in _SPACE) and not value.startswith("{"):
        return value
    return "{ " + value + " }" if value else "{}"


def format_option(name: str, value: str) -> str:
    """The value token of ``-o``: name=value, or a ``{ name = value }`` group."""
    if any(c in value for c in _SPACE) or value.startswith("{"):
        return "{ " + f"{name} = {value}" + " }"
    return f"{name}={value}"


class _Logical:
    """The logical line of an entry block with a map back to physical positions."""

    def __init__(self, contents: list[str], members: list[int], strip_hash: bool) -> None:
        self.text = ""
        self.origin: list[tuple[int, int]] = []  # per char: (block line index, column)
        for idx in members:
            content = contents[idx]
            col = 0
            if strip_hash:
                col = content.index("#") + 1
                if idx == members[0]:
                    while col < len(content) and content[col] in " \t":
                        col += 1
            self.origin += [(idx, pos) for pos in range(col, len(content))]
            self.text += content[col:]

    def token(self, start: int, end: int) -> Token:
        first, last = self.origin[start], self.origin[end - 1]
        return Token(
            self.text[start:end], first[0], first[1], last[1] + 1, spans_lines=first[0] != last[0]
        )

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        text, pos, size = self.text, 0, len(self.text)
        while pos < size:
            while pos < size and text[pos] in _SPACE:
                pos += 1
            if pos >= size:
                break
            start, level = pos, 0
            grouped = len(out) >= len(FIELDS)
            while pos < size:
                char = text[pos]
                if grouped and char == "{":
                    level += 1
                elif grouped and level > 0 and char == "}":
                    level -= 1
                elif level == 0 and char in _SPACE:
                    break
                pos += 1
            out.append(self.token(start, pos))
        return out


# --------------------------------------------------------------------------- entries


class Option(_Value):
    __slots__ = _fields = ("name", "value", "tokens")
    name: str
    value: str
    tokens: tuple[Token, ...]

    def __init__(self, name: str, value: str, tokens: tuple[Token, ...]) -> None:
        self.name = name
        self.value = value
        self.tokens = tokens


class ParsedEntry(_Value):
    """Fields of one entry as master(8) reads them, plus token positions for edits."""

    _fields = ("fields", "args", "options", "tokens", "option_section_end")
    fields: dict[str, str]
    args: list[str]  # argv after the command, braces stripped, without the -o overrides
    options: list[Option]
    tokens: list[Token]
    option_section_end: int  # index into tokens: first token after getopt options

    def __init__(self, fields: dict[str, str], args: list[str], options: list[Option], tokens: list[Token],
                 option_section_end: int) -> None:
        self.fields = fields
        self.args = args
        self.options = options
        self.tokens = tokens
        self.option_section_end = option_section_end


def _parse_tokens(tokens: list[Token], *, path: str, line: int) -> ParsedEntry:
    if len(tokens) < len(FIELDS):
        found = " ".join(t.text for t in tokens)
        missing = FIELDS[len(tokens)]
        raise MasterCfError(
            f"field '{missing}' is missing; an entry needs at least 8 fields "
            f"(service type private unpriv chroot wakeup maxproc command), found {len(tokens)}: '{found}'",
            path=path,
            line=line,
            field_name=missing,
        )
    fields = {name: tok.text for name, tok in zip(FIELDS, tokens)}
    rest = tokens[len(FIELDS):]
    args: list[str] = []
    options: list[Option] = []
    in_options, idx = True, 0
    section_end = len(FIELDS)  # where new -o overrides go: after the getopt options
    while idx < len(rest):
        tok = rest[idx]
        try:
            value = _extpar(tok.text) if tok.text.startswith("{") else tok.text
        except ValueError as exc:
            raise MasterCfError(str(exc), path=path, line=line + tok.line, field_name="args") from exc
        if in_options and tok.text == "--":
            in_options = False
            args.append(value)
        elif in_options and tok.text.startswith("-o"):
            group = [tok]
            if tok.text == "-o":
                if idx + 1 >= len(rest):
                    raise MasterCfError(
                        "'-o' without a value; expected '-o name=value' or '-o { name = value }'",
                        path=path, line=line + tok.line, field_name="options",
                    )
                idx += 1
                group.append(rest[idx])
                raw = rest[idx].text
            else:
                raw = tok.text[2:]
            try:
                nameval = _extpar(raw) if raw.startswith("{") else raw
                name, val = _split_nameval(nameval)
            except ValueError as exc:
                raise MasterCfError(
                    f"{exc}; expected '-o name=value' or '-o {{ name = value }}'",
                    path=path, line=line + group[-1].line, field_name="options",
                ) from exc
            options.append(Option(name, val, tuple(group)))
            section_end = len(FIELDS) + idx + 1
        elif in_options and tok.text.startswith("-") and tok.text != "-":
            args.append(value)
            if len(tok.text) == 2 and tok.text[1] in _OPTS_WITH_VALUE and idx + 1 < len(rest):
                idx += 1
                args.append(rest[idx].text)
            section_end = len(FIELDS) + idx + 1
        else:
            in_options = False
            args.append(value)
        idx += 1
    return ParsedEntry(fields, args, options, tokens, section_end)


class Block:
    """Physical lines that belong together: an entry, or text (comments, blanks)."""

    kind = "text"

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.first_line = 0  # 1-based number in the document, set by renumber()

    def text(self) -> str:
        return "".join(self.lines)


class TextBlock(Block):
    kind = "text"


class Entry(Block):
    """One master.cf entry: active, or commented out (``enabled`` false)."""

    kind = "entry"

    def __init__(self, lines: list[str], *, enabled: bool, path: str = "master.cf", first_line: int = 0) -> None:
        super().__init__(lines)
        self.enabled = enabled
        self.path = path
        self.first_line = first_line
        self._parsed: Optional[ParsedEntry] = None

    # -- reading
    @property
    def parsed(self) -> ParsedEntry:
        if self._parsed is None:
            contents = [_content(x) for x in self.lines]
            members = [i for i, c in enumerate(contents) if self._is_member(i, c)]
            logical = _Logical(contents, members, strip_hash=not self.enabled)
            self._parsed = _parse_tokens(logical.tokens(), path=self.path, line=self.first_line or 1)
        return self._parsed

    def _is_member(self, idx: int, content: str) -> bool:
        if self.enabled:
            return idx == 0 or _is_continuation(content)
        return idx == 0 or _commented_continuation(content)

    @property
    def service(self) -> str:
        return self.parsed.fields["service"]

    @property
    def type(self) -> str:
        return self.parsed.fields["type"]

    @property
    def key(self) -> tuple[str, str]:
        return (self.service, self.type)

    @property
    def options(self) -> dict[str, str]:
        return {opt.name: opt.value for opt in self.parsed.options}

    def to_dict(self) -> dict[str, Any]:
        parsed = self.parsed
        out: dict[str, Any] = {"kind": "entry", **parsed.fields}
        out.update(
            args=list(parsed.args),
            options=self.options,
            enabled=self.enabled,
            line=self.first_line,
            raw=self.text(),
        )
        return out

    def validate(self) -> None:
        validate_fields(self.parsed.fields, path=self.path, line=self.first_line)

    # -- editing (each edit rewrites only this block's lines)
    def _invalidate(self) -> None:
        self._parsed = None

    def _set_token(self, tok: Token, new: str) -> None:
        content, eol = _content(self.lines[tok.line]), _eol(self.lines[tok.line])
        tail = content[tok.end:]
        spaces = len(tail) - len(tail.lstrip(" "))
        if tail and spaces and tail[spaces:spaces + 1] != "\t":
            room = len(tok.text) + spaces
            pad = max(room - len(new), 1)
            tail = " " * pad + tail[spaces:]
        self.lines[tok.line] = content[: tok.start] + new + tail + eol
        self._invalidate()

    def set_field(self, name: str, value: str) -> bool:
        tok = self.parsed.tokens[FIELDS.index(name)]
        if tok.text == value:
            return False
        self._set_token(tok, value)
        return True

    def _delete_span(self, first: Token, last: Token) -> None:
        if first.line != last.line:
            # Cross-line groups are rare; rewrite the whole entry instead.
            raise _Rewrite()
        content, eol = _content(self.lines[first.line]), _eol(self.lines[first.line])
        head = content[: first.start].rstrip(" \t")
        tail = content[last.end:]
        remaining = head + (tail if head.strip(" \t#") else tail.lstrip(" \t"))
        if first.line > 0 and not remaining.strip(" \t#\r"):
            del self.lines[first.line]
        else:
            if not head.strip(" \t#"):
                remaining = content[: first.start] + tail.lstrip(" \t")
            self.lines[first.line] = remaining + eol
        self._invalidate()

    def set_option(self, name: str, value: Optional[str]) -> bool:
        parsed = self.parsed
        matches = [opt for opt in parsed.options if opt.name == name]
        if value is None:
            if not matches:
                return False
            for opt in reversed(matches):
                self._delete_span(opt.tokens[0], opt.tokens[-1])
                self._parsed = None
                parsed = self.parsed
            return True
        if matches:
            opt = matches[-1]
            changed = False
            for extra in reversed(matches[:-1]):  # last first: earlier positions stay valid
                self._delete_span(extra.tokens[0], extra.tokens[-1])
                changed = True
            if changed:
                opt = [o for o in self.parsed.options if o.name == name][-1]
            if opt.value == value:
                return changed
            tok = opt.tokens[-1]
            if tok.spans_lines:
                raise _Rewrite()
            text = format_option(name, value)
            if tok.text.startswith("{") and not _needs_braces(value):
                text = "{ " + f"{name} = {value}" + " }"
            if len(opt.tokens) == 1:
                # postconf 3.7 misreads an attached "-oname=value" (it warns "unused parameter"),
                # so a rewritten value is written detached.
                text = "-o " + text
            self._set_token(tok, text)
            return True
        self._insert_option(format_option(name, value))
        return True

    def _insert_option(self, value_token: str) -> None:
        parsed = self.parsed
        toks = parsed.tokens
        prefix = "" if self.enabled else "#"
        anchor = toks[parsed.option_section_end - 1]
        nxt = toks[parsed.option_section_end] if parsed.option_section_end < len(toks) else None
        if nxt is not None and nxt.line == anchor.line:
            # Plain arguments follow on the same line: insert before them, inline.
            content, eol = _content(self.lines[nxt.line]), _eol(self.lines[nxt.line])
            self.lines[nxt.line] = content[: nxt.start] + f"-o {value_token} " + content[nxt.start:] + eol
        else:
            indent = self._continuation_indent()
            eol = self._eol_style()
            new = f"{prefix}{indent}-o {value_token}{eol}"
            at = anchor.line + 1
            if not self.lines[anchor.line].endswith("\n"):
                self.lines[anchor.line] += "\n"
                new = new.rstrip("\n")
            self.lines.insert(at, new)
        self._invalidate()

    def _continuation_indent(self) -> str:
        for line in self.lines[1:]:
            content = _content(line)
            if not self.enabled:
                if not _commented_continuation(content):
                    continue
                content = content[content.index("#") + 1:]
            elif not _is_continuation(content):
                continue
            return content[: len(content) - len(content.lstrip(" \t"))]
        return "  "

    def _eol_style(self) -> str:
        return "\r\n" if self.lines[0].endswith("\r\n") else "\n"

    def set_args(self, args: list[str]) -> bool:
        if list(self.parsed.args) == list(args):
            return False
        raise _Rewrite()

    def disable(self) -> bool:
        if not self.enabled:
            return False
        self.lines = ["#" + line for line in self.lines]
        self.enabled = False
        self._invalidate()
        return True

    def enable(self) -> bool:
        if self.enabled:
            return False
        out = []
        members = [i for i, x in enumerate(self.lines) if self._is_member(i, _content(x))]
        for idx, line in enumerate(self.lines):
            if idx in members:
                cut = line.index("#")
                line = line[:cut] + line[cut + 1:]
                if idx == 0:
                    line = line.lstrip(" \t")
            out.append(line)
        self.lines = out
        self.enabled = True
        self._invalidate()
        return True


class _Rewrite(Exception):
    """An edit that cannot be done in place; the entry is rendered anew."""


def _commented_continuation(content: str) -> bool:
    """``#  -o name=value`` or ``#  flags=... argv=...`` under a commented-out entry."""
    stripped = content.lstrip(" \t")
    if not stripped.startswith("#"):
        return False
    body = stripped[1:]
    if body[:1] not in (" ", "\t"):
        return False
    first = body.split(None, 1)[0] if body.strip() else ""
    return bool(first) and (first.startswith("-") or first.startswith("{") or "=" in first)


def _looks_like_entry(body: str) -> bool:
    """True when a comment's text is a complete, valid entry (a commented-out service)."""
    parts = body.split()
    if len(parts) < len(FIELDS):
        return False
    fields = dict(zip(FIELDS, parts))
    try:
        validate_fields(fields)
    except MasterCfError:
        return False
    return True


def validate_fields(fields: Mapping[str, str], *, path: str = "master.cf", line: Optional[int] = None) -> None:
    """Field checks as master(8) and postconf(1) apply them."""
    kind = fields["type"]
    if kind not in TYPES:
        raise field_error("type", kind, "one of " + ", ".join(TYPES), path=path, line=line)
    for name in ("private", "unpriv", "chroot"):
        if fields[name] not in BOOL_VALUES:
            raise field_error(name, fields[name], "one of y, n, -", path=path, line=line)
    if kind == "inet" and fields["private"] != "n":
        raise field_error("private", fields["private"], "n (inet services cannot be private)", path=path, line=line)
    if not _wakeup_ok(fields["wakeup"]):
        raise field_error(
            "wakeup", fields["wakeup"], "a number of seconds, optionally followed by '?', or '-'", path=path, line=line
        )
    if not _maxproc_ok(fields["maxproc"]):
        raise field_error("maxproc", fields["maxproc"], "a number of processes (0 = no limit) or '-'", path=path, line=line)
    from ._postfix_semantics import check_int_columns  # not at import: _postfix_semantics builds on this module

    check_int_columns(fields, path=path, line=line)
    validate_service_name(fields["service"], kind, path=path, line=line)
    command = fields["command"]
    if not command or command.startswith("-") or any(c in command for c in _SPACE + "\0"):
        raise field_error("command", command, "a daemon name relative to daemon_directory", path=path, line=line)


def _all_in(text: str, chars: str) -> bool:
    """re.fullmatch("[chars]+", text) without re."""
    return text != "" and not text.strip(chars)


def _wakeup_ok(value: str) -> bool:
    r"""re.fullmatch(r"-|[0-9]+\??", value) without re (a trailing newline is not part of a field)."""
    return value == "-" or _all_in(value[:-1] if value.endswith("?") else value, _DIGITS)


def _maxproc_ok(value: str) -> bool:
    r"""re.fullmatch(r"-|[0-9]+", value) without re."""
    return value == "-" or _all_in(value, _DIGITS)


def _inet_name_ok(name: str) -> bool:
    r"""re.match(r"^(?:(\[[0-9A-Fa-f:.%a-zA-Z]+\]|[A-Za-z0-9_.-]+):)?([A-Za-z0-9_-]+)$", name) without re.

    The port takes no ':', so the last ':' ends the host.
    """
    host, sep, port = name.rpartition(":")
    if not _all_in(port, _ALNUM + "_-"):
        return False
    if not sep:
        return True
    if host[:1] == "[" and host[-1:] == "]" and _all_in(host[1:-1], _ALNUM + ":.%"):
        return True
    return _all_in(host, _ALNUM + "_.-")


def validate_service_name(name: str, kind: str, *, path: str = "master.cf", line: Optional[int] = None) -> None:
    if kind == "inet":
        if not _inet_name_ok(name) or name.startswith(":"):
            raise field_error(
                "service", name, "port, service name, host:port or [ipv6]:port for an inet service", path=path, line=line
            )
    elif not _all_in(name, _ALNUM + "_.+/-") or name.startswith("/") or ".." in name.split("/"):
        raise field_error("service", name, f"a socket name below the queue directory for a {kind} service", path=path, line=line)


# --------------------------------------------------------------------------- document


class MasterCf(_Value):
    """A parsed master.cf: blocks in file order, rendering back the same bytes."""

    _fields = ("blocks", "path", "warnings")
    blocks: list[Block]
    path: str
    warnings: list[str]

    def __init__(self, blocks: Optional[list[Block]] = None, path: str = "master.cf",
                 warnings: Optional[list[str]] = None) -> None:
        self.blocks = [] if blocks is None else blocks
        self.path = path
        self.warnings = [] if warnings is None else warnings

    @classmethod
    def parse(cls, text: str, *, path: str = "master.cf") -> MasterCf:
        if "\0" in text:
            # Postfix reads a line as a C string: whatever follows a NUL byte is silently lost.
            raise MasterCfError("a NUL byte; Postfix would ignore the rest of the line", path=path,
                                line=text.count("\n", 0, text.index("\0")) + 1)
        doc = cls(path=path)
        lines = split_physical(text)
        idx = 0
        pending: list[str] = []

        def flush_text() -> None:
            if pending:
                doc.blocks.append(TextBlock(list(pending)))
                pending.clear()

        while idx < len(lines):
            content = _content(lines[idx])
            if _is_blank(content):
                pending.append(lines[idx])
                idx += 1
            elif _is_comment(content):
                body = content.lstrip(" \t")[1:]
                if body[:1] not in (" ", "\t") and _looks_like_entry(body):
                    flush_text()
                    end = last_member = idx + 1
                    while end < len(lines):
                        nxt = _content(lines[end])
                        if _commented_continuation(nxt):
                            last_member = end + 1
                        elif not _is_comment(nxt) or _looks_like_entry(nxt.lstrip(" \t")[1:]):
                            break
                        end += 1
                    doc.blocks.append(Entry(lines[idx:last_member], enabled=False, path=path, first_line=idx + 1))
                    idx = last_member
                else:
                    pending.append(lines[idx])
                    idx += 1
            elif _is_continuation(content):
                # Postfix skips it with a warning ("logical line must not start with whitespace").
                doc.warnings.append(
                    f"{path} line {idx + 1}: continuation line before any entry; Postfix ignores it"
                )
                pending.append(lines[idx])
                idx += 1
            else:
                flush_text()
                end, last_member = idx + 1, idx
                while end < len(lines):
                    nxt = _content(lines[end])
                    if _is_continuation(nxt):
                        last_member = end
                    elif not (_is_blank(nxt) or _is_comment(nxt)):
                        break
                    end += 1
                doc.blocks.append(Entry(lines[idx:last_member + 1], enabled=True, path=path, first_line=idx + 1))
                idx = last_member + 1
        flush_text()
        doc.renumber()
        for entry in doc.entries(enabled=True):
            entry.parsed  # noqa: B018 - parse eagerly so grammar errors surface with their line
        return doc

    # -- reading
    def render(self) -> str:
        return "".join(block.text() for block in self.blocks)

    def renumber(self) -> None:
        number = 1
        for block in self.blocks:
            block.first_line = number
            if isinstance(block, Entry):
                block._invalidate()
            number += len(block.lines)

    def entries(self, *, enabled: Optional[bool] = None) -> list[Entry]:
        return [b for b in self.blocks if isinstance(b, Entry) and (enabled is None or b.enabled == enabled)]

    def find(self, service: str, kind: str, *, enabled: Optional[bool] = True) -> Optional[Entry]:
        found = [e for e in self.entries(enabled=enabled) if e.key == (service, kind)]
        return found[-1] if found else None

    def validate(self, *, strict: bool = False) -> None:
        """Raise MasterCfError for what master(8) or postconf(1) would refuse.

        ``strict`` also refuses what Postfix only warns about: a duplicate entry
        (master(8) runs the last one) and a continuation line before any entry.
        """
        for entry in self.entries(enabled=True):
            entry.validate()
        if strict:
            self._refuse(self.duplicates(), len(self.warnings))

    def validate_edit(self, before: MasterCf) -> None:
        """validate(), and refuse the warnings an edit would add to those ``before`` had."""
        for entry in self.entries(enabled=True):
            entry.validate()
        known = {(a.key, b.key) for a, b in before.duplicates()}
        self._refuse([pair for pair in self.duplicates() if (pair[0].key, pair[1].key) not in known],
                     len(self.warnings) - len(before.warnings))

    def _refuse(self, pairs: list[tuple[Entry, Entry]], new_warnings: int) -> None:
        for first, entry in pairs:
            raise MasterCfError(
                f"duplicate entry for service '{entry.service}' type '{entry.type}' "
                f"(also at line {first.first_line}); master(8) would silently use only the last one",
                path=self.path, line=entry.first_line, field_name="service", value=entry.service,
            )
        if new_warnings > 0:
            warning = self.warnings[-1]
            raise MasterCfError(warning.split(": ", 1)[1], path=self.path,
                                line=int(warning.split(" line ")[1].split(":")[0]))

    def duplicates(self) -> list[tuple[Entry, Entry]]:
        """(earlier, later) active entries master(8) takes for one service; it runs the later one."""
        from ._postfix_semantics import duplicates  # not at import: _postfix_semantics builds on this module

        return duplicates(self.entries(enabled=True))

    def duplicate_warnings(self) -> list[str]:
        """What master(8) logs for each duplicate, naming both lines."""
        from ._postfix_semantics import duplicate_warning

        return [duplicate_warning(first, later) for first, later in self.duplicates()]

    def to_list(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for block in self.blocks:
            if isinstance(block, Entry):
                out.append(block.to_dict())
            else:
                out.append({"kind": "text", "line": block.first_line, "raw": block.text()})
        return out

    # -- editing
    def eol(self) -> str:
        for block in self.blocks:
            for line in block.lines:
                return "\r\n" if line.endswith("\r\n") else "\n"
        return "\n"

    def widths(self) -> tuple[int, ...]:
        """Column starts of the first space-aligned entry, else the stock layout."""
        for entry in self.entries(enabled=True):
            toks = entry.parsed.tokens
            first = _content(entry.lines[0])
            if "\t" in first or any(t.line != 0 for t in toks[: len(FIELDS)]):
                continue
            starts = [t.start for t in toks[: len(FIELDS)]]
            return tuple(b - a for a, b in zip(starts, starts[1:]))
        return DEFAULT_WIDTHS

    def apply(self, spec: Mapping[str, Any]) -> bool:
        """Bring one entry to ``spec`` (see EntrySpec keys); True when anything changed."""
        want = normalize_spec(spec, path=self.path)
        service, kind, state = want["service"], want["type"], want["state"]
        active = self.find(service, kind, enabled=True)
        if state == "absent":
            if active is None:
                return False
            self.blocks.remove(active)
            self._tidy()
            return True
        if state == "disabled":
            # An entry that is already commented out still takes the requested field values.
            target = active or self.find(service, kind, enabled=False)
            if target is None:
                return False
            changed = self._update(target, want)
            changed = target.disable() or changed
            self._tidy()
            return changed
        entry, changed = active, False
        if entry is None:
            entry = self.find(service, kind, enabled=False)
            if entry is not None:
                entry.enable()
                changed = True
        if entry is None:
            if not want.get("command"):
                raise MasterCfError(
                    f"entry '{service}/{kind}' does not exist; 'command' is required to create it",
                    path=self.path, field_name="command",
                )
            self._append(want)
            self._tidy()
            return True
        changed = self._update(entry, want) or changed
        self._tidy()
        return changed

    def _update(self, entry: Entry, want: Mapping[str, Any]) -> bool:
        changed = False
        try:
            for name in FIELDS[2:]:
                if want.get(name) is not None:
                    changed = entry.set_field(name, want[name]) or changed
            if want.get("args") is not None:
                changed = entry.set_args(want["args"]) or changed
            options = want.get("options") or {}
            if want.get("purge_options"):
                for name in entry.options:
                    if name not in options:
                        changed = entry.set_option(name, None) or changed
            for name, value in options.items():
                changed = entry.set_option(name, value) or changed
        except _Rewrite:
            self._rewrite(entry, want)
            return True
        return changed

    def _rewrite(self, entry: Entry, want: Mapping[str, Any]) -> None:
        current = entry.to_dict()
        options = {} if want.get("purge_options") else dict(current["options"])
        for name, value in (want.get("options") or {}).items():
            if value is None:
                options.pop(name, None)
            else:
                options[name] = value
        merged = {**current, **{k: v for k, v in want.items() if k in FIELDS and v is not None}}
        merged["options"] = options
        merged["args"] = want["args"] if want.get("args") is not None else current["args"]
        text = render_entry(merged, widths=self.widths(), eol=self.eol())
        if not entry.enabled:
            text = "".join("#" + line for line in split_physical(text))
        entry.lines = split_physical(text)
        entry._invalidate()

    def _append(self, want: Mapping[str, Any]) -> None:
        eol = self.eol()
        if self.blocks and not self.blocks[-1].lines[-1].endswith("\n"):
            self.blocks[-1].lines[-1] += eol
        fields = {name: want.get(name) or "-" for name in FIELDS}
        if want["type"] == "inet" and not want.get("private"):
            fields["private"] = "n"
        fields["command"] = want["command"]
        entry_dict = {**fields, "args": want.get("args") or [], "options": {k: v for k, v in (want.get("options") or {}).items() if v is not None}}
        text = render_entry(entry_dict, widths=self.widths(), eol=eol)
        self.blocks.append(Entry(split_physical(text), enabled=True, path=self.path))

    def _tidy(self) -> None:
        self.blocks = [b for b in self.blocks if b.lines]
        self.renumber()


def render_entry(entry: Mapping[str, Any], *, widths: Iterable[int] = DEFAULT_WIDTHS, eol: str = "\n") -> str:
    """One entry in master.cf column style; each -o override on its own continuation line."""
    cols = list(widths)
    head = ""
    for pos, name in enumerate(FIELDS):
        value = str(entry.get(name) if entry.get(name) not in (None, "") else "-")
        if pos < len(cols):
            head += value.ljust(cols[pos] - 1) + " "
        else:
            head += value
    args = [format_arg(a) for a in entry.get("args") or []]
    options = entry.get("options") or {}
    flags, plain = _split_leading_flags(args)
    head = head.rstrip(" ")
    if flags:
        head += " " + " ".join(flags)
    lines = [head]
    for name, value in options.items():
        if value is not None:
            lines.append("  -o " + format_option(str(name), str(value)))
    if plain:
        lines.append("  " + " ".join(plain))
    return eol.join(lines) + eol


def _split_leading_flags(args: list[str]) -> tuple[list[str], list[str]]:
    """Getopt flags (``-v``, ``-n name``) must stay before -o/plain arguments."""
    idx = 0
    while idx < len(args) and args[idx].startswith("-") and args[idx] not in ("-", "--"):
        if len(args[idx]) == 2 and args[idx][1] in _OPTS_WITH_VALUE and idx + 1 < len(args):
            idx += 1
        idx += 1
    return args[:idx], args[idx:]


# --------------------------------------------------------------------------- specs


def _flag(value: Any, name: str, *, path: str) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bool):
        return "y" if value else "n"
    text = str(value).strip(" \t")
    mapping = {"yes": "y", "true": "y", "no": "n", "false": "n"}
    text = mapping.get(text.lower(), text)
    if text not in BOOL_VALUES:
        raise field_error(name, str(value), "one of y, n, - (or a boolean)", path=path)
    return text


def normalize_spec(spec: Mapping[str, Any], *, path: str = "master.cf") -> dict[str, Any]:
    """Turn module/filter input into canonical strings; raise on invalid values."""
    unknown = set(spec) - set(FIELDS) - {"args", "options", "state", "purge_options"}
    if unknown:
        raise MasterCfError(f"unknown entry keys: {', '.join(sorted(unknown))}", path=path)
    for name in ("service", "type"):
        if not spec.get(name):
            raise MasterCfError(f"field '{name}' is required to identify an entry", path=path, field_name=name)
    for name in ("service", "type", "command"):
        if isinstance(spec.get(name), (bool, list, tuple, dict)):
            raise field_error(name, str(spec[name]), "a string", path=path)
    want: dict[str, Any] = {"service": str(spec["service"]), "type": str(spec["type"])}
    if want["service"] == "-":
        # master(8) would create a socket named '-': in every other column '-' means "the default".
        raise field_error("service", "-", "a service name ('-' stands for a default value, and a service "
                          "name has none)", path=path)
    want["state"] = spec.get("state") or "present"
    if want["state"] not in STATES:
        raise field_error("state", want["state"], "one of " + ", ".join(STATES), path=path)
    if want["type"] not in TYPES:
        raise field_error("type", want["type"], "one of " + ", ".join(TYPES), path=path)
    for name in ("private", "unpriv", "chroot"):
        want[name] = _flag(spec.get(name), name, path=path)
    for name in ("wakeup", "maxproc"):
        value = spec.get(name)
        if value is not None and not isinstance(value, bool):
            value = str(value).strip(" \t")  # a line break is refused, not repaired
            valid = _wakeup_ok if name == "wakeup" else _maxproc_ok
            if not valid(value):
                expected = ("a number of seconds, optionally followed by '?', or '-'" if name == "wakeup"
                            else "a number of processes (0 = no limit) or '-'")
                raise field_error(name, value, expected, path=path)
        elif isinstance(value, bool):
            raise field_error(name, str(value), "a number or '-'", path=path)
        want[name] = value
    want["command"] = str(spec["command"]) if spec.get("command") else None
    args = spec.get("args")
    if args is not None:
        if isinstance(args, str) or not isinstance(args, (list, tuple)):
            raise MasterCfError("'args' must be a list of arguments", path=path, field_name="args")
        if any(isinstance(a, (list, tuple, dict)) or a is None for a in args):
            raise MasterCfError("'args' must be a list of strings", path=path, field_name="args")
        want["args"] = [str(a) for a in args]
        for arg in want["args"]:
            problem = _unwritable(arg)
            if problem:
                raise MasterCfError(f"argument '{shown(arg)}' {problem}", path=path, field_name="args")
    options = spec.get("options")
    if options is not None:
        from collections.abc import Mapping  # not at import: the generator never gets here

        if not isinstance(options, Mapping):
            raise MasterCfError("'options' must be a mapping of parameter name to value", path=path, field_name="options")
        want["options"] = {}
        for name, value in options.items():
            if not _all_in(str(name), _PARAM_CHARS):
                raise MasterCfError(f"option name '{shown(str(name))}' is not a Postfix parameter name", path=path,
                                    field_name="options")
            want["options"][str(name)] = _option_value(value, str(name), path=path)
    want["purge_options"] = bool(spec.get("purge_options"))
    if want["state"] != "absent":
        check = {n: want.get(n) or "-" for n in FIELDS}
        if want["type"] == "inet" and want.get("private") is None:
            check["private"] = "n"
        check["command"] = want.get("command") or "placeholder"
        validate_fields(check, path=path)
    return want


def _option_value(value: Any, name: str, *, path: str) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, (list, tuple, dict)) or v is None for v in value):
            raise MasterCfError(f"option '{name}': a list value must hold strings or numbers only", path=path,
                                field_name="options")
        value = ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        raise MasterCfError(f"option '{name}': the value must be a string, number, boolean or list, not a mapping",
                            path=path, field_name="options")
    text = str(value)
    problem = _unwritable(text)
    if problem:
        raise MasterCfError(f"option '{name}' value '{shown(text)}' {problem}", path=path, field_name="options")
    return text.strip(_SPACE)


def _unwritable(text: str) -> str:
    """Why text cannot be written as one master.cf argument (within '{ }'), or ''."""
    if "\n" in text or "\r" in text:
        return "contains a line break"
    if "\0" in text:
        return "contains a NUL byte"
    level = 0
    for char in text:
        level += {"{": 1, "}": -1}.get(char, 0)
        if level < 0:
            break
    if level != 0:
        # '} {' has as many of each, but master(8) would read it as the end of one group and a new one.
        return "has unbalanced braces ('{' and '}' must pair up, in that order)"
    return ""


if TYPE_CHECKING:
    EntryLike = Union[Entry, Mapping[str, Any]]


def __getattr__(name: str) -> Any:
    """EntryLike for modules that use it at run time, built on first use (typing costs start-up time)."""
    if name == "EntryLike":
        from typing import Any, Mapping, Union

        return Union[Entry, Mapping[str, Any]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def item_line(item: Mapping[str, Any], *, path: str = "master.cf") -> Optional[int]:
    """The 'line' of a master_cf_parse item: a positive integer, or None when absent."""
    line = item.get("line")
    if line is None:
        return None
    if isinstance(line, bool) or not isinstance(line, int) or line < 1:
        raise MasterCfError(f"'line' is '{shown(str(line))}', expected a line number (1 or more)", path=path,
                            field_name="line", value=str(line))
    return line


def _fields_of(item: Mapping[str, Any], *, path: str, line: Optional[int]) -> dict[str, Any]:
    """An entry dict without 'raw' as render_entry() input, after the checks of normalize_spec()."""
    spec = {k: v for k, v in item.items() if k not in ("kind", "line", "raw", "enabled")}
    try:
        want = normalize_spec(spec, path=path)
    except MasterCfError as exc:
        raise MasterCfError(exc.reason, path=path, line=line, field_name=exc.field_name, value=exc.value) from exc
    if not want.get("command"):
        raise MasterCfError(f"field 'command' is missing in entry '{want['service']}/{want['type']}'", path=path,
                            line=line, field_name="command")
    fields = {name: want.get(name) or "-" for name in FIELDS}
    if want["type"] == "inet" and not want.get("private"):
        fields["private"] = "n"
    options = {k: v for k, v in (want.get("options") or {}).items() if v is not None}
    return {**fields, "args": want.get("args") or [], "options": options}


def disabled_by(service: str, kind: str, master_service_disable: str) -> bool:
    """Whether master_service_disable names this entry (set_master_ent(): name/type, name.type, type, !negation)."""
    for word in master_service_disable.replace(",", " ").split():
        negate = word.startswith("!")
        word = word.lstrip("!")
        pname, sep, ptype = word.rpartition("/") if "/" in word else word.rpartition(".")
        if (sep and pname == service and ptype == kind) or (not sep and word == kind):
            return not negate
    return False


def active_entries(
    items: Union[str, MasterCf, Iterable[Any]],  # Any: filter input is checked at run time
    *,
    path: str = "master.cf",
    error: Optional[Callable[[str], Exception]] = None,
) -> list[Entry]:
    """Active entries from master.cf text, a parsed document, or master_cf_parse dicts.

    ``error`` builds the exception for input of the wrong shape (default: MasterCfError).
    """
    if isinstance(items, str):
        return MasterCf.parse(items, path=path).entries(enabled=True)
    if isinstance(items, MasterCf):
        return items.entries(enabled=True)
    out: list[Entry] = []
    for item in items:
        if isinstance(item, Entry):
            if item.enabled:
                out.append(item)
            continue
        from collections.abc import Mapping  # dicts from filters; the generator passes Entry objects

        if not isinstance(item, Mapping):
            message = f"expected a master.cf entry (mapping), got {type(item).__name__}"
            raise error(message) if error else MasterCfError(message, path=path)
        line = item_line(item, path=path)
        if item.get("kind", "entry") != "entry" or item.get("enabled") is False:
            continue
        raw = item.get("raw")
        if raw is not None and not isinstance(raw, str):
            raise MasterCfError(f"'raw' is a {type(raw).__name__}, expected the entry's master.cf text", path=path,
                                line=line, field_name="raw")
        if raw:
            text = raw
        else:  # fields only: checked like master_cf_entry input, so a list of options or args is refused
            text = render_entry(_fields_of(item, path=path, line=line))
        try:
            found = MasterCf.parse(text, path=path).entries(enabled=True)
        except MasterCfError as exc:
            raise MasterCfError(exc.reason, path=path, line=line, field_name=exc.field_name, value=exc.value) from exc
        if len(found) != 1:
            message = f"entry text '{shown(text.strip())}' is not exactly one active entry"
            raise error(message) if error else MasterCfError(message, path=path, line=line)
        found[0].first_line = line or 1
        found[0]._invalidate()
        out.append(found[0])
    return out
