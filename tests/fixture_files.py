# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test inputs whose bytes are the point (CRLF, Latin-1) are kept escaped, so the repository stays
UTF-8 text with LF endings for every tool that reads it (ansible-test sanity among them).

``NAME.esc`` holds the bytes of ``NAME`` with ``\\r``, ``\\xNN`` and ``\\\\`` escaped; ``read`` gives
them back, for escaped and plain fixtures alike.
"""

from __future__ import annotations

import re
from pathlib import Path

ESCAPED = ".esc"
_ESCAPE = re.compile(rb"\\(\\|r|x[0-9a-f]{2})")


def _byte(match: re.Match[bytes]) -> bytes:
    code = match.group(1)
    return {b"\\": b"\\", b"r": b"\r"}.get(code) or bytes([int(code[1:], 16)])


def read(path: Path) -> bytes:
    escaped = path.with_name(path.name + ESCAPED)
    return _ESCAPE.sub(_byte, escaped.read_bytes()) if escaped.exists() else path.read_bytes()


def paths(directory: Path, pattern: str = "*.cf") -> list[Path]:
    """The fixtures in a directory, escaped ones under the name they stand for."""
    found = {p.name for p in directory.glob(pattern)}
    found |= {p.name[:-len(ESCAPED)] for p in directory.glob(pattern + ESCAPED)}
    return [directory / name for name in sorted(found)]


def escape(data: bytes) -> bytes:
    out = bytearray()
    for byte in data:
        if byte == 0x5C:
            out += b"\\\\"
        elif byte == 0x0D:
            out += b"\\r"
        elif byte >= 0x80:
            out += b"\\x%02x" % byte
        else:
            out.append(byte)
    return bytes(out)
