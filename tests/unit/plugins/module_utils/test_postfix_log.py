"""The last delivery from the mail log."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _postfix_log as log

NOW = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.timezone.utc).timestamp()


def test_rfc3339_time() -> None:
    line = "2026-12-06T10:00:00.123456+00:00 mx postfix/smtp[1]: A: to=<a@b>, status=sent (250 ok)"
    assert log.line_time(line, NOW) == pytest.approx(NOW - 7200 + 0.123456)
    assert log.line_time("2026-12-06T10:00:00Z x", NOW) == NOW - 7200
    assert log.line_time("2026-12-06T11:00:00+0100 x", NOW) == NOW - 7200


def test_traditional_time_takes_the_year_that_is_not_in_the_future() -> None:
    local = datetime.datetime.fromtimestamp(NOW)
    same_year = datetime.datetime(local.year, 1, 2, 3, 4, 5).timestamp()
    assert log.line_time("Jan  2 03:04:05 mx postfix/smtp[1]: x", NOW) == same_year
    january = datetime.datetime(2027, 1, 1, 12).timestamp()
    december = datetime.datetime(2026, 12, 31, 23, 0, 0).timestamp()
    assert log.line_time("Dec 31 23:00:00.5 mx x", january) == december
    assert log.line_time("Foo 31 23:00:00 mx x", NOW) is None
    assert log.line_time("no time here", NOW) is None


def test_only_the_instances_delivery_agents_count() -> None:
    lines = [
        "2026-12-06T11:00:00+00:00 mx postfix/smtp[1]: A: to=<a@b>, status=sent (250 ok)",
        "2026-12-06T10:59:00+00:00 mx postfix-edge/smtpd[2]: connect from x status=sent",
        "2026-12-06T10:58:00+00:00 mx postfix-edge/smtp[3]: B: to=<a@b>, status=deferred (refused)",
        "2026-12-06T10:57:00+00:00 mx postfix-edge/lmtp[4]: C: to=<a@b>, status=sent (250 ok)",
    ]
    assert log.last_delivery(lines, "postfix-edge", NOW) == NOW - 3780
    assert log.last_delivery(lines, "postfix", NOW) == NOW - 3600
    assert log.last_delivery(lines[1:3], "postfix-edge", NOW) is None


def test_reversed_lines_across_blocks(tmp_path: Path) -> None:
    path = tmp_path / "mail.log"
    lines = [f"line {n} " + "x" * (n % 7) for n in range(200)]
    path.write_text("\n".join(lines) + "\n")
    assert list(log.reversed_lines(str(path), block=13)) == lines[::-1]
    assert list(log.reversed_lines(str(path), block=13, limit=40))[0] == lines[-1]
    assert len(list(log.reversed_lines(str(path), block=13, limit=40))) < 10


def test_newest_delivery_over_readable_logs(tmp_path: Path) -> None:
    old, new = tmp_path / "maillog", tmp_path / "mail.log"
    old.write_text("2026-12-06T09:00:00+00:00 mx postfix/local[1]: A: to=<a@b>, status=sent (delivered)\n")
    new.write_text("2026-12-06T11:00:00+00:00 mx postfix/virtual[1]: A: to=<a@b>, status=sent (delivered)\n"
                   "2026-12-06T11:30:00+00:00 mx postfix/qmgr[1]: A: removed\n")
    when, where = log.find_last_delivery([str(tmp_path / "missing"), str(old), str(new)], "postfix", NOW)
    assert when == NOW - 3600 and where == str(new)
    assert log.find_last_delivery([str(tmp_path / "missing")], "postfix", NOW) == (None, None)


def test_text_a_client_chose_is_no_delivery() -> None:
    """Envelope addresses reach the log as received: they must not read as a delivery."""
    forged = '"x postfix-edge/smtp[1]: Q: to=<a@b>, status=sent "@evil.example'
    lines = [
        f"2026-12-06T11:30:00+00:00 mx postfix-edge/qmgr[5]: D: from=<{forged}>, size=1, nrcpt=1 (queue active)",
        f"2026-12-06T11:20:00+00:00 mx postfix-edge/smtpd[6]: NOQUEUE: reject: RCPT from x: 554; from=<{forged}>",
        '2026-12-06T11:10:00+00:00 mx postfix-edge/smtp[7]: E: to=<"y>, status=sent "@evil.example>, '
        'relay=none, delay=1, delays=1/0/0/0, dsn=4.4.1, status=deferred (connect to x: Connection refused)',
        "2026-12-06T11:00:00+00:00 mx postfix-edge/smtp[8]: F: to=<a@b>, orig_to=<c@d>, relay=x[10.0.0.1]:25, "
        "delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 1)",
    ]
    assert log.last_delivery(lines, "postfix-edge", NOW) == NOW - 3600


def test_a_long_line_is_read_in_linear_time() -> None:
    line = "2026-12-06T11:00:00+00:00 mx postfix/smtp[1]: A: to=<" + "a, " * 200_000 + ">, status=deferred (x)"
    assert log.last_delivery([line] * 20, "postfix", NOW) is None
