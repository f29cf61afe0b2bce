# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The time of an instance's last delivery, from the mail log.

Private to the mailfleet.postfix collection; the API may change without notice.

A delivery is a line of one of the instance's delivery agents (``SYSLOG_NAME/smtp``, ``lmtp``,
``local``, ``virtual``, ``pipe``) with ``status=sent``; SYSLOG_NAME is the instance's
``syslog_name`` (``postfix-edge`` for the instance postfix-edge). The log is read backwards from
its end in blocks, so a large log costs only the part after the last delivery (at most
``SCAN_LIMIT`` bytes). Timestamps: RFC 3339 (rsyslog's default on Debian 12 and later) or the
traditional ``Mmm dd HH:MM:SS`` of syslog and postlogd(8), whose year is the one that puts the
line not after ``now``.
"""

from __future__ import annotations

import datetime
import os
import re
from typing import Iterable, Optional

AGENTS = ("smtp", "lmtp", "local", "virtual", "pipe")
SCAN_LIMIT = 16 * 1024 * 1024
BLOCK = 1024 * 1024
DEFAULT_LOGS = ("/var/log/mail.log", "/var/log/maillog")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                       "Nov", "Dec"), start=1)}
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)(Z|[+-]\d\d:?\d\d)?\s")
_BSD = re.compile(r"([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.\d+)?\s")


# The syslog header up to the message, anchored: the tag must be the agent's own, not text that
# a client put into another line (an envelope address in a reject or qmgr line).
_HEADER = re.compile(r"(?:\d{4}-\d\d-\d\dT\S+|[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)?) \S+ "
                     r"([^\s\[]+)\[\d+\]: [0-9A-Za-z]+: to=<")
# After the addresses: fields whose values have no space or comma (relay, delay, delays, dsn), then the status.
_STATUS = re.compile(r"(?:, [a-z_]+=[^\s,]*)*?, status=(\w+)")


def _address_end(line: str, start: int) -> int:
    """Index after the '>' that closes the address starting at ``start``; -1 when it does not close.
    A '>' inside a quoted local part does not close it."""
    quoted = escaped = False
    for index in range(start, len(line)):
        char = line[index]
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return index + 1
    return -1


def is_delivery(line: str, tags: Iterable[str]) -> bool:
    """Whether the line is a delivery agent's report of a delivery (status=sent) under one of ``tags``."""
    header = _HEADER.match(line)
    if header is None or header.group(1) not in tags:
        return False
    end = _address_end(line, header.end())
    if end > 0 and line.startswith(", orig_to=<", end):
        end = _address_end(line, end + len(", orig_to=<"))
    status = _STATUS.match(line, end) if end > 0 else None
    return status is not None and status.group(1) == "sent"


def line_time(line: str, now: float) -> Optional[float]:
    """The line's timestamp as epoch seconds, None when it has none this module reads."""
    match = _RFC3339.match(line)
    if match:
        stamp, zone = match.group(1), match.group(2) or ""
        if zone == "Z":
            zone = "+00:00"
        elif zone and ":" not in zone:
            zone = zone[:3] + ":" + zone[3:]
        try:
            parsed = datetime.datetime.fromisoformat(stamp + zone)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.astimezone()  # local time, as the log writer meant it
        return parsed.timestamp()
    match = _BSD.match(line)
    if not match or match.group(1) not in _MONTHS:
        return None
    month, day = _MONTHS[match.group(1)], int(match.group(2))
    hour, minute, second = (int(match.group(i)) for i in (3, 4, 5))
    year = datetime.datetime.fromtimestamp(now).year
    for candidate in (year, year - 1):  # a December line read in January
        try:
            when = datetime.datetime(candidate, month, day, hour, minute, second).timestamp()
        except ValueError:
            continue
        if when <= now + 86400:
            return when
    return None


def last_delivery(lines_backwards: Iterable[str], syslog_name: str, now: float) -> Optional[float]:
    """The time of the first delivery line among lines given newest first."""
    tags = {f"{syslog_name}/{agent}" for agent in AGENTS}
    for line in lines_backwards:
        if is_delivery(line, tags):
            when = line_time(line, now)
            if when is not None:
                return when
    return None


def reversed_lines(path: str, *, limit: int = SCAN_LIMIT, block: int = BLOCK) -> Iterable[str]:
    """Lines of a file from its end to its start, at most ``limit`` bytes read (OSError if unreadable)."""
    with open(path, "rb") as handle:
        position = handle.seek(0, os.SEEK_END)
        budget = limit
        rest = b""
        while position > 0 and budget > 0:
            size = min(block, position, budget)
            position -= size
            budget -= size
            handle.seek(position)
            chunk = handle.read(size) + rest
            lines = chunk.split(b"\n")
            rest = lines[0]  # may continue in the block before
            for raw in reversed(lines[1:]):
                if raw:
                    yield raw.decode("utf-8", "replace")
        if position == 0 and rest:
            yield rest.decode("utf-8", "replace")


def find_last_delivery(paths: Iterable[str], syslog_name: str, now: float) -> tuple[Optional[float], Optional[str]]:
    """(time of the last delivery, the log it was found in); the newest over every readable log."""
    best: tuple[Optional[float], Optional[str]] = (None, None)
    for path in paths:
        try:
            when = last_delivery(reversed_lines(path), syslog_name, now)
        except OSError:
            continue
        if when is not None and (best[0] is None or when > best[0]):
            best = (when, path)
    return best
