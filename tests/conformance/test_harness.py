# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The comparison itself: the normalisations pass what differs by design, and nothing else.

No host needed: master's side is a print_master_ent dump, master-less' side what D-Bus returns.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # type: ignore[import-not-found]  # noqa: E402

Q = harness.QUEUE
BRIDGE = ["/usr/bin/python3", "-I", "-S", "/usr/libexec/mailfleet-postfix/bridge", "run", "--holder", "/h",
          "--flow", "/f", "--maxproc", "{maxproc}", "--unit", "x", "--"]


def _entry(name: str, kind: str, argv: list[str], *, maxproc: int = 100, wakeup: int = 0, flags: int = 0,
           endpoint: str = "", fds: int = 1) -> dict[str, Any]:
    return {"name": endpoint or f"private/{name}", "type": kind, "argv": argv, "max_proc": maxproc,
            "wakeup": wakeup, "flags": flags, "path": f"/usr/lib/postfix/sbin/{argv[0]}", "listen_fd_count": fds}


DUMP = {"messages": [], "entries": [
    _entry("smtp", "inet", ["smtpd", "-n", "smtp", "-t", "inet", "-v", "-u", "-c", "-o", "stress=", "-s", "2"],
           endpoint="25", fds=2),
    _entry("pickup", "fifo", ["pickup", "-l", "-t", "fifo", "-v", "-u", "-c"], maxproc=1, wakeup=60,
           endpoint="public/pickup"),
    _entry("relay", "unix", ["smtp", "-n", "relay", "-t", "unix", "-v", "-u", "-o", "stress=",
                             "-o", "syslog_name=postfix/$service_name"]),
    _entry("tlsmgr", "unix", ["tlsmgr", "-l", "-t", "unix", "-v", "-u", "-c"], maxproc=1, wakeup=1000, flags=4),
    _entry("postlog", "unix-dgram", ["postlogd", "-n", "postlog", "-t", "unix-dgram", "-v", "-l"], maxproc=1,
           wakeup=30, endpoint="public/postlog"),
]}


def _service(argv: list[str], *, maxproc: int = 100, user: str = "") -> dict[str, Any]:
    words = [w.replace("{maxproc}", str(maxproc)) for w in BRIDGE]
    return {"ExecStart": [[words[0], words + [f"/usr/lib/postfix/sbin/{argv[0]}"] + argv, False]], "User": user,
            "template": maxproc != 1}


def _masterless_units() -> dict[str, Any]:
    def sock(listen: list[list[str]], accept: bool = False, maxconn: int = 64) -> dict[str, Any]:
        return {"Listen": listen, "Accept": accept, "MaxConnections": maxconn, "SubState": "listening"}

    pickup = {"ExecStart": [["/usr/lib/postfix/sbin/pickup", ["pickup", "-S", "-l", "-t", "fifo"], False]],
              "User": "postfix", "template": True}
    units = {
        "services": {
            "p-smtp-inet": _service(["smtpd", "-n", "smtp", "-t", "inet", "-o", "stress=", "-s", "2",
                                     "-o", "max_use=1000"], user="postfix"),
            "p-pickup-fifo": pickup,
            "p-relay-unix": _service(["smtp", "-n", "relay", "-t", "unix", "-u", "-o", "stress=", "-o",
                                      "max_use=1000", "-o", "syslog_name=postfix/$$service_name"]),
            "p-tlsmgr-unix": _service(["tlsmgr", "-l", "-t", "unix", "-u"], maxproc=1),
            "p-postlog-dgram": _service(["postlogd", "-n", "postlog", "-t", "unix-dgram", "-l"], maxproc=1),
        },
        "sockets": {
            "p-smtp-inet": sock([["Stream", "0.0.0.0:25"], ["Stream", "[::]:25"]]),
            "p-pickup-fifo": sock([["FIFO", f"{Q}/public/pickup"]], accept=True, maxconn=1),
            "p-relay-unix": sock([["Stream", f"{Q}/private/relay"]]),
            "p-tlsmgr-unix": sock([["Stream", f"{Q}/private/tlsmgr"]]),
            "p-postlog-dgram": sock([["Datagram", f"{Q}/public/postlog"]]),
        },
        "timers": {
            "p-pickup-fifo-wakeup": {"TimersMonotonic": [["OnUnitActiveUSec", 60_000_000, 0]], "ActiveState": "active",
                                     "service": {"ExecStart": [], "ExecCondition": []}},
            "p-tlsmgr-unix-wakeup": {"TimersMonotonic": [["OnUnitActiveUSec", 1_000_000_000, 0]],
                                     "ActiveState": "active", "service": {"ExecStart": [], "ExecCondition": [["x"]]}},
        },
        "names": {},
    }
    return units


LIVE = {"inet": [["tcp", "inet", "0.0.0.0", "25"], ["tcp", "inet6", "[::]", "25"]],
        "unix": [[f"{Q}/public/pickup", "fifo"], [f"{Q}/private/relay", "stream"]]}


def _diff(units: dict[str, Any], live: Optional[dict[str, Any]] = None) -> list[str]:
    return harness.compare(harness.master_side(DUMP), harness.masterless_side(units), live or LIVE,
                           copy.deepcopy(LIVE))


def test_normalisations_make_a_faithful_unit_set_identical() -> None:
    assert not _diff(_masterless_units())


def test_a_wrong_o_is_caught() -> None:
    units = _masterless_units()
    units["services"]["p-relay-unix"]["ExecStart"][0][1][-1] = "syslog_name=postfix/relay"
    assert any("relay/unix: argv differs" in d for d in _diff(units))


def test_a_dropped_u_is_caught_where_the_daemon_starts_as_root() -> None:
    units = _masterless_units()
    units["services"]["p-relay-unix"]["ExecStart"][0][1].remove("-u")
    assert any("relay/unix: argv differs" in d for d in _diff(units))


def test_a_missing_service_is_caught() -> None:
    units = _masterless_units()
    del units["services"]["p-relay-unix"]
    assert any(d.startswith("service relay/unix: master(8) runs it") for d in _diff(units))


def test_a_wrong_listener_is_caught() -> None:
    units = _masterless_units()
    units["sockets"]["p-pickup-fifo"]["Listen"] = [["Stream", f"{Q}/public/pickup"]]
    assert any("pickup/fifo: listener" in d for d in _diff(units))
    live = copy.deepcopy(LIVE)
    live["inet"].append(["tcp", "inet", "127.0.0.1", "10025"])
    assert any("127.0.0.1 10025: open under master(8)" in d for d in _diff(_masterless_units(), live=live))


def test_a_wrong_wakeup_is_caught() -> None:
    units = _masterless_units()
    units["timers"]["p-pickup-fifo-wakeup"]["TimersMonotonic"][0][1] = 30_000_000
    assert any("pickup/fifo: wakeup 60" in d for d in _diff(units))
    units = _masterless_units()
    units["timers"]["p-tlsmgr-unix-wakeup"]["service"]["ExecCondition"] = []
    assert any("tlsmgr/unix: wakeup 1000?" in d for d in _diff(units))


def test_a_wrong_process_limit_is_caught() -> None:
    units = _masterless_units()
    units["sockets"]["p-pickup-fifo"]["MaxConnections"] = 5
    assert any("pickup/fifo: process limit" in d for d in _diff(units))


def test_a_socket_that_does_not_listen_is_caught() -> None:
    units = _masterless_units()
    units["sockets"]["p-pickup-fifo"]["SubState"] = "failed"
    assert any("is failed" in d for d in _diff(units))


def test_systemd_expansions_are_decoded_as_systemd_does() -> None:
    want = ["a$b", "<systemd expands $X>", "x<systemd expands ${Y}>"]
    assert harness.systemd_expand(["a$$b", "$X", "x${Y}"]) == want


def test_the_sample_covers_what_make_test_must() -> None:
    fixtures = {p.name for p in harness.fixture_files.paths(harness.FIXTURES)}
    for name in ("fifo-pickup.cf", "postscreen-pass.cf", "postlog-dgram.cf", "hostport.cf", "duplicates.cf",
                 "latin1-comment.cf"):
        assert name in fixtures and name in harness.SAMPLE
    raw = harness.fixture_files.read(harness.FIXTURES / "latin1-comment.cf")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        raise AssertionError("latin1-comment.cf must not be valid UTF-8")


def test_units_that_run_no_postfix_daemon_are_not_services() -> None:
    units = _masterless_units()
    units["services"]["p-config-error"] = {"ExecStart": [["/bin/true", ["/bin/true"], False]], "User": "",
                                           "template": False}
    assert not _diff(units)
