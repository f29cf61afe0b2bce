"""Queue counts and deferral details: postqueue -j lines and queue directories."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _postfix_queue as queue


def message(name: str, arrival: int = 1000, reasons: tuple[str, ...] = ()) -> str:
    rcpts: list[dict[str, Any]] = [{"address": f"r{i}@example.net", "delay_reason": r} for i, r in enumerate(reasons)]
    return json.dumps({"queue_name": name, "queue_id": "ABC", "arrival_time": arrival, "recipients": rcpts or
                       [{"address": "x@example.net"}]}) + "\n"


def test_counts_oldest_and_reasons_per_recipient() -> None:
    lines = [message("active"), message("deferred", 500, ("refused", "refused")), message("deferred", 300, ("timeout",)),
             message("hold"), message("maildrop"), message("incoming"), message("deferred", 900, ("refused",))]
    got = queue.summarize(lines)
    assert got.counts == {"maildrop": 1, "incoming": 1, "active": 1, "deferred": 3, "hold": 1}
    assert got.total == 7 and got.source == "postqueue"
    assert got.oldest_deferred == 300
    assert got.reasons == [("refused", 3), ("timeout", 1)]
    assert got.deferred_recipients == 4


def test_top_limits_reasons_and_ties_sort_by_text() -> None:
    lines = [message("deferred", reasons=(r,)) for r in ("b", "a", "c", "a")]
    assert queue.summarize(lines, top=2).reasons == [("a", 2), ("b", 1)]
    assert queue.summarize(lines, top=0).reasons == []


def test_long_and_multiline_reasons_merge_once_shortened() -> None:
    base = "x" * 300
    lines = [message("deferred", reasons=(base + "1",)), message("deferred", reasons=(base + "2",)),
             message("deferred", reasons=("two\n  lines",))]
    got = dict(queue.summarize(lines).reasons)
    assert got[base[:queue.REASON_MAX - 3] + "..."] == 2
    assert got["two lines"] == 1


def test_lines_that_are_not_messages_are_counted_not_trusted() -> None:
    lines = ["", "not json\n", "[1, 2]\n", '{"queue_id": "X"}\n', message("deferred", arrival="soon", reasons=(1,)),  # type: ignore[arg-type]
             message("corrupt-ish")]
    got = queue.summarize(lines)
    assert got.unreadable == 3
    assert got.counts["deferred"] == 1 and got.oldest_deferred is None and got.reasons == []
    assert got.counts["corrupt-ish"] == 1  # a queue showq may add later is kept, not dropped


def test_the_stream_is_consumed_lazily() -> None:
    held = []

    def lines() -> Iterator[str]:
        for n in range(10000):
            held.append(n)
            yield message("deferred", n + 1000, ("r",))
            held.pop()  # the consumer asked for the next line: nothing accumulates

    got = queue.summarize(lines())
    assert got.counts["deferred"] == 10000 and got.oldest_deferred == 1000 and not held


def test_directories_count_files_in_hashed_subdirectories(tmp_path: Path) -> None:
    for rel in ("deferred/A/A1", "deferred/A/A2", "deferred/B/B1", "active/X", "hold/H", "maildrop/M"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    for n in range(5):
        (outside / str(n)).write_text("")
    os.symlink(outside, tmp_path / "deferred" / "C")  # a daemon's link: not followed
    os.symlink(outside / "0", tmp_path / "active" / "link")  # nor counted
    counts = queue.count_directories(str(tmp_path))
    assert counts == {"maildrop": 1, "incoming": 0, "active": 1, "deferred": 3, "hold": 1}


def test_merged_takes_counts_from_directories_and_details_from_postqueue() -> None:
    details = queue.summarize([message("deferred", 5, ("r",))])
    counts = {"maildrop": 0, "incoming": 0, "active": 0, "deferred": 7, "hold": 0}
    both = queue.merged(counts, details)
    assert both.counts["deferred"] == 7 and both.oldest_deferred == 5 and both.reasons == [("r", 1)]
    assert both.source == "directories"
    assert queue.merged(None, details) is details
    only = queue.merged(counts, None)
    assert only.reasons == [] and only.oldest_deferred is None and only.counts == counts


@pytest.mark.parametrize("arrival", [2 ** 63 - 1, 10 ** 14, -5, 0, True, 1.5e9])
def test_an_implausible_arrival_time_is_no_oldest_message(arrival: object) -> None:
    line = json.dumps({"queue_name": "deferred", "arrival_time": arrival, "recipients": []}) + "\n"
    got = queue.summarize([line, message("deferred", 1_700_000_000, ("r",))])
    assert got.counts["deferred"] == 2 and got.oldest_deferred == 1_700_000_000


def test_a_hashed_directory_swapped_for_a_link_is_not_followed(tmp_path: Path) -> None:
    """The mail owner owns the queue: a link in place of a hashed directory must not make root
    count (or read) what it points to, nor make the queue look empty."""
    deferred, elsewhere = tmp_path / "deferred", tmp_path / "elsewhere"
    (deferred / "A").mkdir(parents=True)
    (deferred / "A" / "A1").write_text("")
    elsewhere.mkdir()
    for n in range(5):
        (elsewhere / f"f{n}").write_text("")
    (deferred / "B").symlink_to(elsewhere)
    assert queue.count_files(str(deferred)) == 1
    with pytest.raises(OSError):  # the queue directory itself a link: unreadable, never followed
        (tmp_path / "linked").symlink_to(elsewhere)
        queue.count_files(str(tmp_path / "linked"))


def test_a_hashed_directory_removed_while_counting_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deferred = tmp_path / "deferred"
    for name in ("A", "B"):
        (deferred / name).mkdir(parents=True)
        (deferred / name / f"{name}1").write_text("")
    real_open = os.open

    def vanishing(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if path == "B":
            raise FileNotFoundError(errno.ENOENT, "removed meanwhile", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(queue.os, "open", vanishing)
    assert queue.count_directories(str(tmp_path), ("deferred",)) == {"deferred": 1}
