# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Probe clients of the split fleet, run on the hosts as python3 SCRIPT (ansible.builtin.script), stdlib only.

  send HOST PORT SENDER RCPT TOKEN   send one probe mail; prints the queue id from the DATA reply
  drained CONFIG_DIR QUEUE_ID TIMEOUT  wait until the instance's queue no longer holds QUEUE_ID
  refused HOST RCPT [PORT]          prints "refused: ..." when HOST refuses mail from here (a 5xx reply
                                     or no connection), "accepted: ..." otherwise

Exit status 0 on success; otherwise the reason on stderr.
"""

from __future__ import annotations

import smtplib
import subprocess
import sys
import time

HELO = "probe.invalid"


def message(sender: str, rcpt: str, token: str) -> bytes:
    return (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: mailfleet probe {token}\r\n"
            f"Message-Id: <{token}@{HELO}>\r\n\r\n{token}\r\n").encode()


def send(host: str, port: int, sender: str, rcpt: str, token: str, *, timeout: float = 30) -> str:
    """The queue id the server gave the mail ("250 2.0.0 Ok: queued as 4Xyz"); SystemExit when refused."""
    with smtplib.SMTP(host, port, timeout=timeout) as smtp:
        smtp.ehlo(HELO)
        for step, (code, reply) in (("MAIL FROM", smtp.mail(sender)), ("RCPT TO", smtp.rcpt(rcpt))):
            if code != 250:
                raise SystemExit(f"{host}:{port} refused {step} {rcpt}: {code} {reply.decode(errors='replace')}")
        code, reply = smtp.data(message(sender, rcpt, token))
        if code != 250:
            raise SystemExit(f"{host}:{port} refused the message: {code} {reply.decode(errors='replace')}")
    return reply.decode(errors="replace").rsplit(" ", 1)[-1]


def drained(config_dir: str, queue_id: str, timeout: float, *, poll: float = 0.25) -> None:
    """Return once postqueue -j no longer lists queue_id (passed on, or bounced); SystemExit after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        queue = subprocess.run(["postqueue", "-c", config_dir, "-j"], capture_output=True, text=True, check=False)
        if queue.returncode == 0 and f'"{queue_id}"' not in queue.stdout:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{queue_id} is still in the queue of {config_dir} after {timeout:g} s: "
                             f"{(queue.stdout or queue.stderr).strip()[-2000:]}")
        time.sleep(poll)


def refused(host: str, rcpt: str, port: int = 25, *, timeout: float = 15) -> str:
    """'refused: ...' for a refused connection, a 5xx greeting, or a 5xx reply to MAIL FROM or RCPT TO, or
    the server closing the connection it accepted; else 'accepted: ...'. No host is no probe: an error."""
    if not host.strip():
        raise SystemExit("no host to probe: the delivery host's address is unknown")
    try:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
    except ConnectionRefusedError as exc:
        return f"refused: {exc}"
    except smtplib.SMTPConnectError as exc:
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"refused: {exc.smtp_code} {text}" if exc.smtp_code >= 500 else f"accepted: {exc.smtp_code} {text}"
    try:
        with smtp:
            smtp.ehlo("outside.invalid")
            code, reply = smtp.mail("probe@outside.invalid")
            if code == 250:
                code, reply = smtp.rcpt(rcpt)
    except smtplib.SMTPServerDisconnected as exc:  # connected, then dropped by the server
        return f"refused: {exc}"
    text = reply.decode(errors="replace")
    return f"refused: {code} {text}" if code >= 500 else f"accepted: {code} {text}"


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    if command == "send" and len(args) == 5:
        print(send(args[0], int(args[1]), args[2], args[3], args[4]))
    elif command == "drained" and len(args) == 3:
        drained(args[0], args[1], float(args[2]))
    elif command == "refused" and len(args) in (2, 3):
        print(refused(args[0], args[1], int(args[2]) if len(args) == 3 else 25))
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
