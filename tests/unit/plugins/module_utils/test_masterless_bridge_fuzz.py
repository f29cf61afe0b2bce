"""The status holder's request handling under arbitrary requests: no exception escapes, every refused
request's descriptors are closed, and nothing of it is left in the holder's selector.

The holder runs in this process (no systemd): it takes this very process for the peer, in the cgroup
the example writes into a fake /proc.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.mailfleet.postfix.plugins.module_utils import _masterless_bridge, _masterless_generator, _masterless_units

BUDGET = int(os.environ.get("MAILFLEET_FUZZ_EXAMPLES", "400"))
UNITS = ["t-p-unix@1.service", "t-p-unix@7.service", "t-x-unix.service", "t-y-unix.service", "evil@1.service",
         "t-holder.service", "t-p-unix@.service", "", "t-p-unix@1.service\nmaxproc=0"]
CGROUPS = ["/t.slice/t-p-unix@1.service", "/t.slice/t-x-unix.service", "/t.slice/t-ghost-unix.service",
           "/t.slice/evil@1.service", "/other.slice/t-p-unix@1.service", "/", "", "/t.slice/t-p-unix@1.service/sub"]
KEYS = ["unit", "command", "pid", "maxproc", "max_use", "stamp", "lock"]
VALUES = st.one_of(st.sampled_from(UNITS + ["status", "retire", "reload", "0", "-1", "99999999999999999999",
                                            "pid/master.pid", "/etc/passwd", "../../x"]),
                   st.text(max_size=40))
KINDS = ["pair", "seqpacket", "dgram", "listener", "file", "pipe", "dir"]


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "queue" / "pid").mkdir(parents=True)
        (base / "used").mkdir()
        (base / "proc" / str(os.getpid())).mkdir(parents=True)
        bridge = ["/usr/bin/python3", "-I", "-S", "/usr/libexec/mailfleet-postfix/bridge", "run", "--holder", "h.sock",
                  "--flow", "flow"]
        units = {
            "t-p-unix@.service": bridge + ["--maxproc", "3", "--max-use", "5", "--stamp", str(base / "used" / "t-p-unix"),
                                           "--lock", "pid/unix.p"],
            "t-x-unix.service": bridge + ["--maxproc", "1"],
        }
        files = {name: "[Service]\nExecStart=" + " ".join(_masterless_units.exec_quote(w) for w in words + ["--unit", "%n", "--", "/d", "d"])
                 for name, words in units.items()}
        _masterless_generator.save_set(str(base / "units.set"), files)
        yield base


def _holder(base: Path) -> _masterless_bridge.Holder:
    owner, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    holder = _masterless_bridge.Holder(listener=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET), flow=str(base / "flow"),
                                       stamps=str(base / "used"), queue_directory=str(base / "queue"), owner=owner, group=group,
                                       systemctl="/bin/false", target="t.target", units_set=(str(base / "units.set"),),
                                       proc=str(base / "proc"))
    holder.cgroup = "/t.slice/t-holder.service"
    holder._start = lambda units, verb="start": None  # type: ignore[method-assign]
    return holder


def _descriptors(kinds: list[str], keep: list[Any]) -> list[int]:
    fds = []
    for kind in kinds:
        if kind in ("pair", "seqpacket"):
            pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM if kind == "pair" else socket.SOCK_SEQPACKET)
            keep.extend(pair)
            fds.append(pair[0].fileno())
        elif kind == "dgram":
            keep.append(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
            fds.append(keep[-1].fileno())
        elif kind == "listener":
            keep.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            keep[-1].bind(("127.0.0.1", 0))
            keep[-1].listen(1)
            fds.append(keep[-1].fileno())
        elif kind == "pipe":
            r, w = os.pipe()
            keep.extend([os.fdopen(r), os.fdopen(w)])
            fds.append(r)
        else:
            fd = os.open(os.devnull if kind == "file" else "/", os.O_RDONLY)
            keep.append(os.fdopen(fd) if kind == "file" else _Fd(fd))
            fds.append(fd)
    return fds


class _Fd:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        os.close(self.fd)


def _structured() -> st.SearchStrategy[bytes]:
    line = st.tuples(st.sampled_from(KEYS) | st.text(max_size=8), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}")
    return st.lists(line, max_size=6).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogateescape"))


def ask(holder: _masterless_bridge.Holder, data: bytes, fds: list[int]) -> str:
    client, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with client:
        socket.send_fds(client, [data], fds)
        holder.sel.register(server, holder.event_read, ("control", None))
        holder.controls[server.fileno()] = (server, 0.0)
        holder._control(server)
        client.settimeout(1)
        try:
            return client.recv(1 << 20).decode(errors="replace")
        except (TimeoutError, OSError):
            return ""


def check_selector(holder: _masterless_bridge.Holder) -> None:
    """Every descriptor in the selector is open and is one the holder knows."""
    for key in list(holder.sel.get_map().values()):
        os.fstat(key.fd)
        what = key.data[0]
        assert what in ("peer", "listen"), key.data
        if what == "peer":
            assert key.fd in holder.peers


def _registration() -> st.SearchStrategy[tuple[bytes, list[str], str]]:
    """Close to what the bridge sends: the unit it runs in, a status socket first, anything after."""
    return st.builds(lambda unit, extra, kinds: (f"unit={unit}\n".encode() + extra, ["pair", *kinds], f"/t.slice/{unit}"),
                     st.sampled_from(UNITS[:3]), _structured(), st.lists(st.sampled_from(KINDS), max_size=4))


REQUEST = st.one_of(_registration(),
                    st.tuples(st.one_of(st.binary(max_size=300), _structured()), st.lists(st.sampled_from(KINDS), max_size=6),
                              st.sampled_from(CGROUPS)))


@settings(max_examples=BUDGET, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=st.lists(REQUEST, min_size=1, max_size=4))
def test_no_request_ends_the_holder_or_leaks_a_descriptor(root: Path, requests: list[tuple[bytes, list[str], str]]) -> None:
    before = _fd_count()
    holder = _holder(root)
    keep: list[Any] = []
    try:
        for data, kinds, cgroup in requests:
            (root / "proc" / str(os.getpid()) / "cgroup").write_text(f"0::{cgroup}\n")
            reply = ask(holder, data, _descriptors(kinds, keep))
            assert reply == "OK" or reply.startswith("ERR ") or reply.startswith("{"), reply
            check_selector(holder)
            for pool in holder.pools.values():
                assert pool.maxproc in (1, 3)  # from the unit set, whatever the request said
    finally:
        for obj in keep:
            obj.close()
        holder.reload()  # forget every worker: closes what the holder kept
        holder.sel.close()
        holder.listener.close()
    assert holder.reaper.flush()
    holder.reaper.stop()  # its socket to the closer process
    assert _fd_count() == before


@pytest.mark.parametrize("count", [_masterless_bridge.MAX_FDS, _masterless_bridge.MAX_FDS + 1, 250])
def test_too_many_descriptors(root: Path, count: int) -> None:
    before = _fd_count()
    holder = _holder(root)
    (root / "proc" / str(os.getpid()) / "cgroup").write_text("0::/t.slice/t-p-unix@1.service\n")
    keep: list[Any] = []
    reply = ask(holder, b"unit=t-p-unix@1.service\n", _descriptors(["pair"] * count, keep))
    assert reply == "OK" if count <= _masterless_bridge.MAX_FDS else reply.startswith("ERR")
    for obj in keep:
        obj.close()
    holder.reload()
    holder.sel.close()
    holder.listener.close()
    assert holder.reaper.flush()
    holder.reaper.stop()  # its socket to the closer process
    assert _fd_count() == before


def test_peer_identity_without_so_peerpidfd(root: Path) -> None:
    """Before Linux 6.5 the holder takes a pidfd of the pid itself."""
    holder = _holder(root)
    (root / "proc" / str(os.getpid()) / "cgroup").write_text("0::/t.slice/t-x-unix.service\n")

    class Conn:
        def getsockopt(self, level: int, name: int, size: int) -> bytes:
            raise OSError(92, "Protocol not available")

    assert holder._identify(Conn(), os.getpid()) == "t-x-unix.service"  # type: ignore[arg-type]
    with pytest.raises(ProcessLookupError):
        holder._identify(Conn(), 2 ** 22 + 12345)  # type: ignore[arg-type]
    holder.sel.close()
    holder.listener.close()


@pytest.mark.parametrize(("text", "path"), [
    ("0::/postfix.slice/postfix-out.slice/postfix-out-smtp-inet@3.service\n", "/postfix.slice/postfix-out.slice/postfix-out-smtp-inet@3.service"),
    ("12:cpu,cpuacct:/x\n1:name=systemd:/system.slice/a.service\n", "/system.slice/a.service"),  # v1
    ("1:name=systemd:/system.slice/a.service\n0::/system.slice/a.service\n", "/system.slice/a.service"),  # hybrid
    ("garbage\n\n:::\n", ""),
])
def test_cgroup_path(text: str, path: str) -> None:
    assert _masterless_bridge.cgroup_path(text) == path


@settings(max_examples=BUDGET, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=6))
def test_exec_words_reads_what_exec_quote_writes(words: list[str]) -> None:
    """The holder reads a pool's options from ExecStart= as systemd does."""
    assert _masterless_bridge.exec_words(" ".join(_masterless_units.exec_quote(w) for w in words)) == words


def test_pool_specs_of_a_generated_unit_set() -> None:
    """What the holder reads from the generator's units: every pool the bridge runs, with its maxproc."""
    text = (Path(__file__).parent / "fixtures" / "debian-master.cf").read_text()
    unitset = _masterless_units.build_units(text + "relay2 unix - - y - 7 smtp -o syslog_name=a%b$c\n", _masterless_units.Instance(),
                                            resolver=lambda host: ["127.0.0.1"], port_resolver=lambda name: 25)
    specs = _masterless_bridge.pool_specs(_masterless_generator.files_of(unitset))
    bridged = {name for name, content in unitset.units.items() if "/bridge run " in content}
    assert set(specs) == bridged and bridged
    for name in bridged:
        assert _masterless_bridge.own_unit(unitset.instance.prefix, name.replace("@.", "@1."))
    relay2 = specs["postfix-default-relay2-unix@.service"]
    assert relay2["maxproc"] == "7" and relay2["unit"] == "%n" and relay2["max-use"].isdigit()
    assert specs["postfix-default-qmgr-unix.service"]["maxproc"] == "1"


def test_a_unit_retires_only_its_own_daemons(root: Path) -> None:
    """ExecStop= runs `bridge retire` as the unit's user: it may retire its own unit's daemon, no other."""
    holder = _holder(root)
    cgroup = root / "proc" / str(os.getpid()) / "cgroup"
    keep: list[Any] = []
    try:
        cgroup.write_text("0::/t.slice/t-x-unix.service\n")
        assert ask(holder, b"unit=t-x-unix.service\n", _descriptors(["pair"], keep)) == "OK"
        retire = f"command=retire\npid={os.getpid()}\n".encode()
        conn, _other = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        keep += [conn, _other]
        cgroup.write_text("0::/t.slice/t-p-unix@1.service\n")
        with pytest.raises(_masterless_bridge.BridgeError, match="no daemon with pid"):  # refused, and so logged
            holder._request(conn, retire, [], 0, pid=os.getpid(), uid=65534)
        assert [w.unit for _p, w in holder.peers.values()] == ["t-x-unix.service"]
        cgroup.write_text("0::/t.slice/t-x-unix.service\n")
        assert holder._request(conn, retire, [], 0, pid=os.getpid(), uid=65534) == "OK"
        assert not holder.peers
        with pytest.raises(_masterless_bridge.BridgeError, match="needs root"):
            holder._request(conn, b"command=reload\n", [], 0, pid=os.getpid(), uid=65534)
    finally:
        for sock in keep:
            sock.close()


def _lingering_tcp(keep: list[Any]) -> socket.socket:
    """A TCP socket whose last close blocks (SO_LINGER, a peer that never reads, a full send buffer)."""
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    accepted, _addr = server.accept()
    keep += [server, accepted]
    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.setblocking(False)
    try:
        while True:
            client.send(b"x" * 65536)
    except BlockingIOError:
        pass
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 5))
    return client


def answered_at_once(holder: _masterless_bridge.Holder, server: socket.socket) -> bool:
    """The holder handles the request on ``server`` without waiting on anything the peer controls."""
    holder.sel.register(server, holder.event_read, ("control", None))
    holder.controls[server.fileno()] = (server, 0.0)
    start = time.monotonic()
    holder._control(server)
    return time.monotonic() - start < 1.0


def request_with_lingering(holder: _masterless_bridge.Holder, keep: list[Any], fds: list[int]) -> socket.socket:
    """A status request carrying ``fds`` and, last, a lingering TCP socket whose only copy the holder then has;
    the holder answers at once. Returns the client's end."""
    tcp = _lingering_tcp(keep)
    client, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    keep.append(client)
    socket.send_fds(client, [b"command=status\n"], fds + [tcp.fileno()])
    tcp.close()  # the holder's copy is the last one
    assert answered_at_once(holder, server)
    return client


def test_a_lingering_descriptor_in_a_request_does_not_block_the_holder(root: Path) -> None:
    holder = _holder(root)
    keep: list[Any] = []
    try:
        request_with_lingering(holder, keep, [])
        assert holder.reaper.flush()
    finally:
        for obj in keep:
            obj.close()


def test_a_lingering_descriptor_on_the_status_channel_does_not_block_the_holder(root: Path) -> None:
    holder = _holder(root)
    keep: list[Any] = []
    try:
        (root / "proc" / str(os.getpid()) / "cgroup").write_text("0::/t.slice/t-x-unix.service\n")
        status, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        keep.append(status)
        assert ask(holder, b"unit=t-x-unix.service\n", [theirs.fileno()]) == "OK"
        theirs.close()
        assert len(holder.peers) == 1
        _pool, worker = next(iter(holder.peers.values()))
        tcp = _lingering_tcp(keep)
        socket.send_fds(status, [_masterless_bridge.STATUS.pack(os.getpid(), 0, 1)], [tcp.fileno()])
        tcp.close()
        start = time.monotonic()
        holder._drain(worker.peer)
        assert time.monotonic() - start < 1.0
        assert worker.avail and holder.peers  # the record counted, the peer kept
        assert holder.reaper.flush()
    finally:
        for obj in keep:
            obj.close()
        holder.reload()


def test_one_registration_per_unit(root: Path) -> None:
    """A compromised worker that forks can neither make the holder keep a descriptor per child nor drop
    its unit's daemon: while the registered daemon lives, no other process of the unit registers."""
    holder = _holder(root)
    keep: list[Any] = []
    try:
        holder._identify = lambda conn, pid: "t-x-unix.service"  # type: ignore[method-assign]
        conn, _other = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        keep += [conn, _other]

        def register(pid: int) -> str:
            fds = [os.dup(fd) for fd in _descriptors(["pair"], keep)]  # the holder's own, as recv_fds gives them
            try:
                return holder._request(conn, b"unit=t-x-unix.service\n", fds, 0, pid=pid, uid=0)
            except _masterless_bridge.BridgeError:
                for fd in fds:
                    os.close(fd)
                raise

        dead = 1 << 30  # above any pid_max: no such process
        assert register(dead) == "OK"
        assert register(os.getpid()) == "OK"  # the unit's earlier daemon is gone: replaced
        for child in range(50):  # children of the live daemon, all in the unit's cgroup
            with pytest.raises(_masterless_bridge.BridgeError, match="registered daemon already"):
                register(dead - 1 - child)
        assert [[w.pid for w in pool.workers.values()] for pool in holder.pools.values()] == [[os.getpid()]]
    finally:
        for obj in keep:
            obj.close()
        holder.reload()


def test_a_reload_is_marked_for_the_crash_gate(root: Path) -> None:
    holder = _holder(root)
    holder.reload()
    mark = root / "throttle" / ".reload"
    assert abs(int(mark.read_text()) - time.time()) < 5


def test_a_flood_of_refusals_is_logged_in_bounded_lines(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    holder = _holder(root)
    for _unused in range(_masterless_bridge.REFUSALS_LOGGED + 30):
        assert ask(holder, b"garbage\n", []).startswith("ERR")
    logged = capsys.readouterr().err.splitlines()
    assert sum("refused a request" in line for line in logged) == _masterless_bridge.REFUSALS_LOGGED
    holder.refusals[0] -= _masterless_bridge.REFUSALS_WINDOW  # the window is over: the count of the rest is told
    assert ask(holder, b"garbage\n", []).startswith("ERR")
    logged = capsys.readouterr().err.splitlines()
    assert logged[0].endswith("holder: 30 more refused requests not logged") and "refused a request" in logged[1]


def test_descriptors_beyond_the_limit_are_not_closed_by_the_holder(root: Path) -> None:
    """65 descriptors, the last one lingering: the kernel must not drop it in the holder's main loop."""
    holder = _holder(root)
    keep: list[Any] = []
    try:
        client = request_with_lingering(holder, keep, _descriptors(["pair"] * _masterless_bridge.MAX_FDS, keep))
        assert client.recv(4096).startswith(b"ERR refused: request with more than")
    finally:
        for obj in keep:
            obj.close()
        holder.reaper.stop()


def test_a_closer_stuck_on_a_queued_descriptor_is_replaced(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A lingering socket queued behind a request on its connection: closing the connection drops it."""
    holder = _holder(root)
    keep: list[Any] = []
    try:
        tcp = _lingering_tcp(keep)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 600))
        client, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        keep.append(client)
        client.send(b"command=status\n")
        socket.send_fds(client, [b"later"], [tcp.fileno()])  # still queued when the holder closes the connection
        tcp.close()
        assert answered_at_once(holder, server)
        stuck = holder.reaper.pid
        assert not holder.reaper.flush(0.5)  # the closer waits on the linger
        time.sleep(_masterless_bridge.Reaper.STUCK)
        holder.reaper.check()
        assert holder.reaper.pid == 0 and "the closer is stuck" in capsys.readouterr().err
        with pytest.raises(ChildProcessError):
            os.waitpid(stuck, os.WNOHANG)  # killed and reaped
        mine, theirs = socket.socketpair()
        keep.append(mine)
        holder.reaper.close(theirs)  # a new closer takes the next one
        assert holder.reaper.flush() and holder.reaper.pid not in (0, stuck)
    finally:
        for obj in keep:
            obj.close()
        holder.reaper.stop()


def test_liveness_of_a_pidfd_above_1023() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip("hard descriptor limit below 2048")
    resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    pidfd = os.pidfd_open(os.getpid())
    high = os.dup2(pidfd, 1500)
    try:
        assert _masterless_bridge._alive(high)
    finally:
        os.close(high)
        os.close(pidfd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
