# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The content-filter loop written by mailfleet.postfix.master/postconf works in a real Postfix."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest

SEND = "swaks --silent 2 --server 127.0.0.1 --from probe@localhost --to root@localhost --header 'Subject: {token}' --header 'Message-Id: <{token}@localhost>'"


def test_master_cf_has_the_filter_pair(host: Any) -> None:
    listener = host.check_output("postconf -M 127.0.0.1:10025/inet")
    assert re.match(r"^127\.0\.0\.1:10025\s+inet\s+n\s+-\s+n\s+-\s+-\s+smtpd\b", listener), listener
    assert host.check_output("postconf -Ph smtp/inet/content_filter") == "smtp:[127.0.0.1]:10025"
    assert host.check_output("postconf -Ph 127.0.0.1:10025/inet/content_filter") == ""


def test_main_cf_setting(host: Any) -> None:
    assert host.check_output("postconf -h smtp_send_xforward_command") == "yes"


def test_postfix_config_is_valid_and_running(host: Any) -> None:
    assert host.run("postfix check").rc == 0
    assert host.run("postfix status").rc == 0


def test_reinjection_listener_is_up(host: Any) -> None:
    assert host.socket("tcp://127.0.0.1:10025").is_listening


def test_refused_change_left_no_trace(host: Any) -> None:
    # side_effect.yml tried to add 127.0.0.1:10026 with private=y; the module must have refused it.
    assert host.run("postconf -M 127.0.0.1:10026/inet").stdout.strip() == ""
    assert not host.socket("tcp://127.0.0.1:10026").is_listening


@pytest.fixture(scope="module")
def delivered(host: Any) -> tuple[str, str]:
    """Send one mail to port 25; return (token, Postfix journal) once it is in root's mailbox."""
    token = f"mailfleet-{uuid.uuid4().hex}"
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    host.check_output(SEND.format(token=token))
    for _attempt in range(40):
        if host.run(f"grep -q '{token}' /var/mail/root").rc == 0:
            break
        time.sleep(0.25)
    else:
        pytest.fail(f"mail {token} did not arrive in /var/mail/root; queue: {host.run('postqueue -p').stdout}")
    log = host.check_output(f"journalctl -q --no-pager -o cat --since '{since}' -t postfix/cleanup -t postfix/smtp -t postfix/local")
    return token, log


def test_mail_reaches_the_mailbox(delivered: tuple[str, str], host: Any) -> None:
    token = delivered[0]
    assert token in host.file("/var/mail/root").content_string


def test_mail_passed_through_the_filter_port(delivered: tuple[str, str]) -> None:
    # Follow the queue IDs: cleanup (message-id) -> smtp to 127.0.0.1:10025 -> local delivery.
    token, log = delivered
    first = re.findall(rf"(\w+): message-id=<{token}@localhost>", log)
    assert first, f"cleanup never saw {token}:\n{log}"
    relayed = re.search(
        rf"{first[0]}: to=<root@localhost>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:10025,.*status=sent .*queued as (\w+)",
        log,
    )
    assert relayed, f"{first[0]} did not go through 127.0.0.1:10025:\n{log}"
    assert re.search(rf"{relayed.group(1)}: to=<root@localhost>, .*relay=local,.*status=sent", log), log
