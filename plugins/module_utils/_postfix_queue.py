# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An instance's mail queue: counts per queue, the oldest deferred message, why mail is deferred.

Private to the mailfleet.postfix collection; the API may change without notice.

Two sources, both read in one pass without holding the queue in memory:

- ``postqueue -c DIR -j`` (showq(8)): one JSON object per message with ``queue_name``,
  ``arrival_time`` and ``recipients[].delay_reason``; ``summarize`` reads it line by line.
  As root it reads the queue directly when the instance's showq service is down.
- the queue directories themselves (``count_directories``): regular files per queue, hashed
  subdirectories included. Root only (maildrop and the queues are not world-readable); it needs
  no Postfix process and is an order of magnitude faster than showq, which opens every file
  (docs/benchmarks.md).

Everything in a queue directory is written by Postfix daemons (uid postfix), so it is read as
hostile: symbolic links are not followed, JSON that does not parse is counted, not trusted.
"""

from __future__ import annotations

import errno
import json
import os
from typing import Iterable, Optional

from ._host import Record

# The queues showq(8) reports, in the order mail moves through them.
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")
REASON_MAX = 200  # characters of a deferral reason kept (a remote server's reply can be long)
ARRIVAL_MAX = 2 ** 33  # seconds since the epoch (year 2242): later is no arrival time
HASH_LEVELS_MAX = 10  # subdirectory levels counted (hash_queue_depth is 1 or 2 in practice)
REASONS_TOP = 5


class QueueSummary(Record):
    """What one pass over a queue found; None where the source could not tell."""

    _fields = ("counts", "source", "oldest_deferred", "reasons", "deferred_recipients", "unreadable")
    counts: dict[str, int]  # queue name -> messages
    source: str  # 'postqueue' or 'directories'
    oldest_deferred: Optional[int]  # arrival time (epoch seconds) of the oldest deferred message
    reasons: list[tuple[str, int]]  # the most frequent deferral reasons, recipients per reason
    deferred_recipients: int
    unreadable: int  # lines of postqueue -j that were not a message object

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def printable_line(text: str) -> str:
    """One line of printable characters, '?' for the rest: what a remote server, the mail owner or a
    host sent reaches the operator's terminal without escape sequences."""
    return "".join(char if char.isprintable() else "?" for char in " ".join(text.split()))


def short_reason(reason: str) -> str:
    """One line, at most REASON_MAX characters: the reason as a table or a metric label shows it."""
    text = printable_line(reason)
    return text if len(text) <= REASON_MAX else text[:REASON_MAX - 3] + "..."


def summarize(lines: Iterable[str], *, top: int = REASONS_TOP) -> QueueSummary:
    """Counts, the oldest deferred arrival and the ``top`` deferral reasons from ``postqueue -j``
    output, consumed line by line (a queue of 100,000 messages is never held whole)."""
    counts = dict.fromkeys(QUEUES, 0)
    reasons: dict[str, int] = {}
    oldest: Optional[int] = None
    recipients = unreadable = 0
    loads = json.loads
    for line in lines:
        if not line.strip():
            continue
        try:
            message = loads(line)
            queue = message["queue_name"]
        except (ValueError, TypeError, KeyError):
            unreadable += 1
            continue
        if queue not in counts:
            counts[queue] = 0
        counts[queue] += 1
        if queue != "deferred":
            continue
        arrival = message.get("arrival_time")
        # showq reads it from the queue file (the mail owner's): only a plausible time counts
        if isinstance(arrival, int) and not isinstance(arrival, bool) and 0 < arrival < ARRIVAL_MAX and (oldest is None or arrival < oldest):
            oldest = arrival
        for rcpt in message.get("recipients") or ():
            reason = rcpt.get("delay_reason") if isinstance(rcpt, dict) else None
            if isinstance(reason, str) and reason:
                recipients += 1
                reasons[reason] = reasons.get(reason, 0) + 1
    ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    # Reasons that differ only past REASON_MAX or in white space are one reason once shortened.
    merged: dict[str, int] = {}
    for reason, count in ranked:
        key = short_reason(reason)
        merged[key] = merged.get(key, 0) + count
    top_reasons = sorted(merged.items(), key=lambda item: (-item[1], item[0]))[:max(top, 0)]
    return QueueSummary(counts=counts, source="postqueue", oldest_deferred=oldest, reasons=top_reasons,
                        deferred_recipients=recipients, unreadable=unreadable)


def count_files(directory: str, levels: int = HASH_LEVELS_MAX) -> int:
    """Regular files in directory and its subdirectories; links are neither followed nor counted.

    Walked by descriptor with O_NOFOLLOW: the mail owner, who owns the queue, can swap a
    subdirectory for a link but never make root read another directory. A subdirectory that
    disappears meanwhile (a hashed directory removed) is skipped; only a missing ``directory``
    is FileNotFoundError."""
    return _count_fd(os.open(directory, _DIR_FLAGS), levels)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _count_fd(fd: int, levels: int) -> int:
    total = 0
    subdirectories = []
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    subdirectories.append(entry.name)
                elif entry.is_file(follow_symlinks=False):
                    total += 1
        for name in subdirectories if levels > 0 else ():
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    continue  # removed or replaced since it was listed
                raise
            total += _count_fd(child, levels - 1)
    finally:
        os.close(fd)
    return total


def count_directories(queue_directory: str, queues: Iterable[str] = QUEUES) -> dict[str, int]:
    """Messages per queue, counted as files (OSError when a queue cannot be read: not root).

    A missing queue directory counts 0 (an instance whose set-permissions never ran)."""
    counts = {}
    for queue in queues:
        try:
            counts[queue] = count_files(os.path.join(queue_directory, queue))
        except FileNotFoundError:
            counts[queue] = 0
    return counts


def from_directories(counts: dict[str, int]) -> QueueSummary:
    return QueueSummary(counts=dict(counts), source="directories", oldest_deferred=None, reasons=[],
                        deferred_recipients=0, unreadable=0)


def merged(counts: Optional[dict[str, int]], details: Optional[QueueSummary]) -> QueueSummary:
    """Counts from the directories when they could be read (they need no Postfix process),
    the oldest message and reasons from postqueue when it ran."""
    if details is None:
        return from_directories(counts or dict.fromkeys(QUEUES, 0))
    if counts is None:
        return details
    return QueueSummary(counts=dict(counts), source="directories", oldest_deferred=details.oldest_deferred,
                        reasons=details.reasons, deferred_recipients=details.deferred_recipients,
                        unreadable=details.unreadable)
