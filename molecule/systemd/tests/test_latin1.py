# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Postfix reads master.cf as bytes: a Latin-1 master.cf runs master-less after a reboot-equivalent,
and a master.cf that cannot be mapped, with no last good unit set, fails visibly and starts nothing.

Runs before test_masterless.py (file order) and leaves the instance as it found it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Iterator

import pytest
import testinfra

MAIL = "mailfleet-mol-systemd"
TARGET = "postfix-default.target"
GENERATED = "/run/systemd/generator"
RUN_SET = "/run/mailfleet-postfix/default/units.set"
STATE_SET = "/var/lib/mailfleet-postfix/default/units.set"
ERROR_UNIT = "postfix-default-config-error.service"
# Any Postfix daemon; the brackets keep pgrep from finding the shell that runs it.
DAEMONS = "'/usr/lib/postfix/sbi[n]/'"
# Run on the host: bytes in, bytes out (a shell here would have to carry the 0xfc bytes itself).
LATIN1_EDIT = r"""python3 -c '
import sys
path = "/etc/postfix/master.cf"
lines = open(path, "rb").read().split(b"\n")
out = [lines[0], b"# \xdcbersicht der Dienste f\xfcr das B\xfcro (ISO-8859-1)"]
for line in lines[1:]:
    out.append(line)
    if line.startswith(b"smtp ") and b" inet " in line:
        out.append(b"  -o syslog_name=postfix/m\xfcnchen")
open(path, "wb").write(b"\n".join(out))
'"""
# The pid of every process whose argv carries the Latin-1 byte, as master(8) would pass it.
FIND_ARGV = r"""python3 -c '
import os
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        continue
    if b"syslog_name=postfix/m\xfcnchen" in argv:
        print(pid, argv[0].decode())
'"""


@pytest.fixture(scope="module")
def mail() -> Any:
    return testinfra.get_host(f"podman://{MAIL}")


@pytest.fixture(autouse=True)
def no_master(mail: Any) -> Iterator[None]:
    assert mail.run("pgrep -x master").stdout == "", "a master(8) process runs"
    yield
    assert mail.run("pgrep -x master").stdout == "", "a master(8) process runs"


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def delivered(mail: Any) -> None:
    subject = f"latin1-{uuid.uuid4().hex[:12]}"
    out = mail.run(f"swaks --silent 2 --server 127.0.0.1:25 --from probe@local.test --to root@localhost "
                   f"--header 'Subject: {subject}'")
    assert out.rc == 0, out.stdout + out.stderr
    wait_for(lambda: mail.run(f"grep -qF -- '{subject}' /var/mail/root").rc == 0, "local delivery")


def reboot_equivalent(mail: Any) -> None:
    """What a boot does to the instance: nothing runs, /run is empty, the generator maps master.cf."""
    assert mail.run(f"systemctl stop {TARGET}").rc == 0
    wait_for(lambda: mail.run(f"pgrep -f {DAEMONS}").stdout.strip() == "", "the daemons to exit")
    mail.run(f"rm -f {RUN_SET}")
    assert mail.run("systemctl daemon-reload").rc == 0


@pytest.fixture
def restore(mail: Any) -> Iterator[None]:
    mail.run(f"cp -p /etc/postfix/master.cf /root/master.cf.latin1-test && cp -p {STATE_SET} /root/units.set.latin1-test")
    try:
        yield
    finally:
        mail.run(f"cp -p /root/master.cf.latin1-test /etc/postfix/master.cf && cp -p /root/units.set.latin1-test {STATE_SET}")
        try:
            reboot_equivalent(mail)
        finally:  # whatever happened, the later tests need the instance running
            mail.run("systemctl daemon-reload")
            assert mail.run(f"systemctl start {TARGET}").rc == 0
        wait_for(lambda: mail.run("ss -Htln 'sport = :25'").stdout.strip() != "", "smtp to listen again")


def test_latin1_master_cf_runs_after_a_reboot(mail: Any, restore: None) -> None:
    assert mail.run(LATIN1_EDIT).rc == 0
    assert b"# \xdcbersicht" in mail.run("cat /etc/postfix/master.cf").stdout_bytes
    reboot_equivalent(mail)
    log = mail.run("journalctl -b --no-pager -t mailfleet-postfix-generator --since=-30s").stdout
    assert "instance default" not in log, log
    assert "ExecStart=/bin/true" in mail.file(f"{GENERATED}/{ERROR_UNIT}").content_string  # the stub: no error
    # systemd's own escape in ExecStart= (systemd.syntax(7)); the unit file itself is UTF-8.
    unit = mail.file(f"{GENERATED}/postfix-default-smtp-inet@.service").content
    assert b" -o syslog_name=postfix/m\\xfcnchen\n" in unit
    unit.decode("utf-8")
    # The kept copy holds master.cf's bytes as they are.
    assert b"syslog_name=postfix/m\xfcnchen" in mail.file(RUN_SET).content
    assert mail.run(f"systemctl start {TARGET}").rc == 0
    wait_for(lambda: mail.run("ss -Htln 'sport = :25'").stdout.strip() != "", "smtp to listen")
    delivered(mail)
    # smtpd got the byte itself, exactly as master(8) would pass it.
    found = mail.run(FIND_ARGV).stdout.split()
    # smtpd, and the forking bridge that started it (its argv ends with the daemon's)
    assert "smtpd" in found[1::2] and set(found[1::2]) <= {"smtpd", "/usr/bin/python3"}, found
    failed = mail.run("systemctl list-units --failed --plain --no-legend 'postfix-*'").stdout
    assert failed.strip() == "", failed


def test_unmappable_master_cf_without_a_good_set_fails_visibly(mail: Any, restore: None) -> None:
    mail.run("echo 'oops unix - - y - - frobnicate' >> /etc/postfix/master.cf")
    mail.run(f"rm -f {STATE_SET}")  # no last good set anywhere: a first boot after a bad edit
    reboot_equivalent(mail)
    assert "ExecStart=/bin/false" in mail.file(f"{GENERATED}/{ERROR_UNIT}").content_string
    start = mail.run(f"systemctl start {TARGET}")
    assert start.rc != 0, "the target started without a unit set"
    assert mail.run(f"systemctl is-failed {ERROR_UNIT}").stdout.strip() == "failed"
    assert ERROR_UNIT in mail.run("systemctl list-units --failed --plain --no-legend").stdout
    journal = mail.run(f"journalctl -b --no-pager -u {ERROR_UNIT}").stdout
    assert "master.cf line" in journal and "frobnicate" in journal and "not started" in journal, journal
    # Fail-closed: nothing listens, no daemon runs, and the distribution's master stays masked.
    assert mail.run("ss -Htln 'sport = :25'").stdout.strip() == ""
    assert mail.run(f"pgrep -f {DAEMONS}").stdout.strip() == ""
    assert mail.run("systemctl is-enabled postfix@-.service").stdout.strip().startswith("masked")


def test_the_fixed_master_cf_leaves_no_failed_unit(mail: Any) -> None:
    # After the restore of the previous test: the error unit is gone, not left "not-found failed".
    try:
        failed = mail.run("systemctl list-units --failed --plain --no-legend").stdout
        assert ERROR_UNIT not in failed, failed
        delivered(mail)
    finally:  # the later tests expect no failed postfix unit: never leave one behind
        mail.run(f"systemctl reset-failed {ERROR_UNIT}")
