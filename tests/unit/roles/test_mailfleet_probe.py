"""The probe clients (roles/edge/files/mailfleet_probe.py) against a small local SMTP server: the mail as sent,
the queue id from the DATA reply, refusals, and waiting for the edge's queue to drain (a stand-in postqueue)."""

from __future__ import annotations

import importlib.util
import os
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "roles" / "edge" / "files" / "mailfleet_probe.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mailfleet_probe", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


probe = load()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, replies: dict[str, str]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.replies = replies
        self.sessions: list[dict[str, Any]] = []


class Handler(socketserver.StreamRequestHandler):
    """Just enough SMTP: EHLO, MAIL, RCPT, DATA, QUIT; replies to MAIL/RCPT/DATA as the test asks."""

    def handle(self) -> None:
        server: Server = self.server  # type: ignore[assignment]
        session: dict[str, Any] = {"commands": [], "data": b""}
        server.sessions.append(session)
        self.send(server.replies.get("GREETING", "220 test ESMTP"))
        while line := self.rfile.readline():
            command = line.decode().rstrip("\r\n")
            session["commands"].append(command)
            verb = command.split(" ", 1)[0].split(":", 1)[0].upper()
            if verb == "EHLO":
                self.send("250-test\r\n250 8BITMIME")
            elif verb in ("MAIL", "RCPT"):
                self.send(server.replies.get(verb, "250 2.1.0 Ok"))
            elif verb == "DATA":
                self.send("354 End data with <CR><LF>.<CR><LF>")
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    session["data"] += chunk
                self.send(server.replies.get("DATA", "250 2.0.0 Ok: queued as 4XyzAB12"))
            elif verb == "QUIT":
                self.send("221 2.0.0 Bye")
                return
            else:
                self.send("250 Ok")

    def send(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")


@pytest.fixture
def smtp(request: pytest.FixtureRequest) -> Iterator[Server]:
    server = Server(getattr(request, "param", {}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def port(server: Server) -> int:
    return int(server.server_address[1])


def test_send_prints_the_queue_id_and_sends_the_token(smtp: Server) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "send", "127.0.0.1", str(port(smtp)), "probe@example.org",
                           "alice@example.org", "mailfleet-probe-mx1-1"], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4XyzAB12"
    (session,) = smtp.sessions
    commands = [c.upper() for c in session["commands"]]
    assert "MAIL FROM:<PROBE@EXAMPLE.ORG>" in commands and "RCPT TO:<ALICE@EXAMPLE.ORG>" in commands
    data = session["data"].decode()
    assert "Subject: mailfleet probe mailfleet-probe-mx1-1\r\n" in data
    assert "Message-Id: <mailfleet-probe-mx1-1@probe.invalid>\r\n" in data
    assert data.endswith("\r\nmailfleet-probe-mx1-1\r\n")


@pytest.mark.parametrize(("smtp", "fragment"), [
    ({"RCPT": "554 5.7.1 <alice@example.org>: Relay access denied"}, "refused RCPT TO alice@example.org: 554 5.7.1"),
    ({"MAIL": "451 4.3.0 try later"}, "refused MAIL FROM"),
    ({"DATA": "554 5.7.1 no"}, "refused the message: 554"),
], indirect=["smtp"])
def test_send_fails_with_the_servers_reply(smtp: Server, fragment: str) -> None:
    with pytest.raises(SystemExit) as failed:
        probe.send("127.0.0.1", port(smtp), "probe@example.org", "alice@example.org", "t")
    assert fragment in str(failed.value)


@pytest.mark.parametrize(("smtp", "verdict"), [
    ({}, "accepted: 250"),
    ({"RCPT": "554 5.7.1 Client host rejected: Access denied"}, "refused: 554 5.7.1 Client host rejected"),
    ({"MAIL": "550 5.7.1 no"}, "refused: 550"),
    ({"GREETING": "554 5.7.1 go away"}, "refused: 554 5.7.1 go away"),
], indirect=["smtp"])
def test_refused_tells_a_refusal_from_an_acceptance(smtp: Server, verdict: str) -> None:
    assert probe.refused("127.0.0.1", "root@example.org", port(smtp)).startswith(verdict)


def test_a_refused_connection_is_a_refusal() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    done = subprocess.run([sys.executable, str(SCRIPT), "refused", "127.0.0.1", "root@example.org", str(free)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("refused: "), done.stdout + done.stderr


def test_no_address_is_no_probe() -> None:
    """An unknown delivery address must fail the check, not pass it as a refusal."""
    done = subprocess.run([sys.executable, str(SCRIPT), "refused", "", "root@example.org"],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode != 0 and not done.stdout.startswith("refused"), done.stdout
    assert "no host to probe" in done.stderr


def fake_postqueue(tmp_path: Path, queued_looks: int) -> dict[str, str]:
    """A postqueue that lists the mail for the first queued_looks calls, then an empty queue."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "postqueue").write_text(
        "#!/bin/sh\n"
        f'n=$(cat "{tmp_path}/looks" 2>/dev/null || echo 0); echo $((n + 1)) > "{tmp_path}/looks"\n'
        f'[ "$1 $2 $3" = "-c /etc/postfix-edge -j" ] || exit 2\n'
        f'[ "$n" -lt {queued_looks} ] && echo \'{{"queue_id": "4XyzAB12", "queue_name": "active"}}\'\n'
        "exit 0\n")
    (bindir / "postqueue").chmod(0o755)
    return dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")


def test_drained_waits_until_the_mail_left_the_queue(tmp_path: Path) -> None:
    env = fake_postqueue(tmp_path, queued_looks=3)
    done = subprocess.run([sys.executable, str(SCRIPT), "drained", "/etc/postfix-edge", "4XyzAB12", "30"],
                          capture_output=True, text=True, check=False, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "looks").read_text().strip() == "4"


def test_drained_gives_up_after_the_timeout_with_the_queue(tmp_path: Path) -> None:
    env = fake_postqueue(tmp_path, queued_looks=10**6)
    done = subprocess.run([sys.executable, str(SCRIPT), "drained", "/etc/postfix-edge", "4XyzAB12", "0.5"],
                          capture_output=True, text=True, check=False, timeout=60, env=env)
    assert done.returncode != 0
    assert "4XyzAB12 is still in the queue of /etc/postfix-edge after 0.5 s" in done.stderr


def test_usage() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "send", "x"], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode != 0 and "send HOST PORT SENDER RCPT TOKEN" in done.stderr
