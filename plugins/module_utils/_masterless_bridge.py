# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run stock Postfix daemons under systemd without master(8).

Private to the mailfleet.postfix collection; the API may change without notice.
Standard library only: the systemd_units module installs this very file on hosts
as /usr/libexec/mailfleet-postfix/bridge. Sub-commands:

run     (ExecStart of pool services) rebuild master's file descriptors and exec
        the daemon, so no interpreter stays behind:
          3, 4   the instance's flow FIFO, opened twice (master's shared pipe)
          5      one end of a fresh stream socketpair; the other end is handed
                 to the holder (SCM_RIGHTS), which keeps it open and drains it
          6...   systemd's listening sockets (LISTEN_FDS), non-blocking
        umask 077; cwd comes from WorkingDirectory= (the queue directory).
holder  one per instance: holds and drains every daemon's status peer, keeps the
        flow FIFO alive, and starts more workers of a pool (prefix@N.service)
        when all are busy and clients wait: one per waiting client, as
        master_avail.c forks, but all at once (a unit start is slower than fork).
        It also holds master's own locks (pid/master.pid, master.lock), so a
        master(8) cannot start beside it and postfix(1) finds it:
          postfix status   "running", with the holder's pid
          postfix reload   SIGHUP: systemctl daemon-reload (the generator
                           re-reads master.cf), start what is new, then close
                           every status peer: daemons finish their current
                           work and exit, which is master's graceful reload
          postfix stop     SIGTERM: stop the instance's target (systemd itself
                           stops the holder with SIGUSR1)
retire  (ExecStop of verify, postscreen, proxywrite) close one daemon's status
        channel and wait for it to exit instead of SIGTERM: they call setsid()
        to protect their databases from master's signals.
kick    send a wakeup byte to an inet service (postkick reaches unix and fifo only).
endpoint (ExecStartPre of local listeners) replace a stale endpoint as master(8) does.
status  print the holder's view of pools and workers (JSON).
"""

from __future__ import annotations

import _socket
import os
import stat
import struct
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:  # annotations only: typing costs start-up time at every worker start
    import socket
    from types import ModuleType
    from typing import Callable, Mapping, NoReturn

# Only what `run` needs is imported here: it runs at every worker start. `run` uses the C module
# _socket: `import socket` pulls in selectors, enum and collections, ~8 ms of the ~16 ms that the
# interpreter costs per worker start (python3 -I -S -X importtime, Debian 12). The holder and the
# client commands import socket where they need it.

MASTER_FLOW_READ = 3
MASTER_FLOW_WRITE = 4
MASTER_STATUS_FD = 5
MASTER_LISTEN_FD = 6
SD_LISTEN_FDS_START = 3
# struct MASTER_STATUS {int pid; unsigned gen; int avail;} (src/master/master_proto.h)
STATUS = struct.Struct("=iIi")
STAT_TAKEN, STAT_AVAIL = 0, 1
MAX_FDS = 64
STATUS_CMSG_SPACE = _socket.CMSG_SPACE(253 * 4)  # SCM_MAX_FD descriptors: what one message may carry
REQUEST_MAX = 65536
REFUSALS_LOGGED, REFUSALS_WINDOW = 20, 10.0
MAX_CONTROLS = 256  # control connections waiting for their request; the oldest goes first
CONTROL_TIMEOUT = 5.0
PENDING_TIMEOUT = 30.0
COALESCE = 0.005
# A client that waits less than this is one a worker finishing its session takes (smtp-source and
# real clients reconnect at once); starting a unit for it would cost ~90 ms of CPU for nothing.
GROW_GRACE = 0.03


class BridgeError(Exception):
    """A setup problem; printed to the journal before the unit fails."""


# Accept backlog of a listening socket: TCP_INFO aliases tcpi_unacked (offset 24) to the queue length
# of a listener (tcp_get_info()); for AF_UNIX, sock_diag's UNIX_DIAG_RQLEN (what `ss -xl` prints).
TCP_INFO_UNACKED = struct.Struct("=I")
NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, NLMSG_HDR = 4, 20, 1, struct.Struct("=IHHII")
UNIX_DIAG_REQ = struct.Struct("=BBHIIIII")  # family, protocol, pad, states, ino, show, cookie[2]
UDIAG_SHOW_RQLEN, UNIX_DIAG_RQLEN, UNIX_DIAG_MSG_SIZE, TCP_LISTEN = 0x10, 4, 16, 10


def listen_backlog(sock: socket.socket, diag: socket.socket | None) -> int | None:
    """Clients waiting in a listener's accept queue; None where the kernel does not tell."""
    if sock.type != _socket.SOCK_STREAM:
        return None
    if sock.family in (_socket.AF_INET, _socket.AF_INET6):
        info = sock.getsockopt(_socket.IPPROTO_TCP, _socket.TCP_INFO, 32)
        return TCP_INFO_UNACKED.unpack_from(info, 24)[0] if len(info) >= 28 else None
    if sock.family != _socket.AF_UNIX or diag is None:
        return None
    request = UNIX_DIAG_REQ.pack(_socket.AF_UNIX, 0, 0, 1 << TCP_LISTEN, os.fstat(sock.fileno()).st_ino,
                                 UDIAG_SHOW_RQLEN, 0xFFFFFFFF, 0xFFFFFFFF)  # no cookie: look up by inode
    diag.send(NLMSG_HDR.pack(NLMSG_HDR.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0) + request)
    data = diag.recv(4096)
    length, kind = NLMSG_HDR.unpack_from(data)[:2]
    if kind != SOCK_DIAG_BY_FAMILY:
        return None  # NLMSG_ERROR: not found, or unix_diag is not available
    offset = NLMSG_HDR.size + UNIX_DIAG_MSG_SIZE
    while offset + 4 <= min(length, len(data)):
        size, attr = struct.unpack_from("=HH", data, offset)
        if size < 4:
            break
        if attr == UNIX_DIAG_RQLEN:
            return int(struct.unpack_from("=I", data, offset + 4)[0])
        offset += (size + 3) & ~3
    return None


def _log(message: str) -> None:
    try:
        sys.stderr.write(f"mailfleet-postfix: {message}\n")
        sys.stderr.flush()
    except OSError:
        pass


def _options(argv: list[str], names: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """--name value pairs up to '--'; the rest is returned as is (argparse costs start-up time)."""
    opts: dict[str, str] = {}
    pos = 0
    while pos < len(argv):
        arg = argv[pos]
        if arg == "--":
            return opts, argv[pos + 1:]
        if not arg.startswith("--") or arg[2:] not in names or pos + 1 >= len(argv):
            raise BridgeError(f"unexpected argument '{arg}'")
        opts[arg[2:]] = argv[pos + 1]
        pos += 2
    return opts, []


# --------------------------------------------------------------------------- run


def listen_fds(environ: dict[str, str], pid: int) -> list[int]:
    """sd_listen_fds(): the sockets systemd passed to this very process."""
    if environ.get("LISTEN_PID") != str(pid):
        return []
    try:
        count = int(environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))


def encode(message: Mapping[str, object]) -> bytes:
    """key=value lines: cheaper to load than json at every worker start."""
    for key, value in message.items():
        if "\n" in f"{key}{value}" or "=" in key:
            raise BridgeError(f"cannot encode {key}={value!r}")
    return "".join(f"{key}={value}\n" for key, value in message.items()).encode()


def decode(data: bytes) -> dict[str, str]:
    out = {}
    for line in data.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def _connect(conn: _socket.socket, holder: str, timeout: float) -> None:
    import time  # built in: no start-up cost

    end = time.monotonic() + timeout
    while True:
        try:
            conn.connect(holder)
            return
        except BlockingIOError:  # the holder's backlog is full for a moment (unix sockets do not wait)
            if time.monotonic() > end:
                raise
            time.sleep(0.01)


def register(holder: str, message: dict[str, str], fds: list[int], timeout: float = 30.0) -> int:
    """Hand the holder a daemon's status peer; the answer is how many more daemons this unit may start
    (``OK fork=N``, only for pools whose unit set entry has --forks)."""
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    conn.settimeout(timeout)
    try:
        _connect(conn, holder, timeout)
        # socket.send_fds() without the socket module
        rights = struct.pack(f"{len(fds)}i", *fds)
        conn.sendmsg([encode(message)], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        reply = conn.recv(4096).decode(errors="replace")
    except OSError as exc:
        raise BridgeError(f"status holder {holder}: {exc}") from exc
    finally:
        conn.close()
    ok, _space, extra = reply.partition(" ")
    if ok != "OK" or (extra and not (extra.startswith("fork=") and extra[5:].isdigit())):
        raise BridgeError(f"status holder refused {message.get('unit')}: {reply or 'no answer'}")
    return int(extra[5:]) if extra else 0


def arrange_fds(flow: str, status_fd: int, sources: list[int]) -> None:
    """Place the flow FIFO on 3/4, status on 5, listeners on 6.. and close everything else."""
    flow_r = os.open(flow, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    flow_w = os.open(flow, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISFIFO(os.fstat(flow_r).st_mode):
        raise BridgeError(f"{flow} is not a FIFO")
    wanted = [flow_r, flow_w, status_fd] + sources
    # Park every source above the targets first: sources 3.. overlap targets 3..
    high = 10 + MASTER_LISTEN_FD + len(sources)
    parked = [_dupfd(fd, high) for fd in wanted]
    for fd in set(wanted):
        os.close(fd)
    for target, fd in enumerate(parked, start=MASTER_FLOW_READ):
        os.dup2(fd, target, inheritable=True)
        os.close(fd)
    last = MASTER_LISTEN_FD + len(sources)
    os.closerange(last, _max_fd())
    for fd in range(MASTER_LISTEN_FD, last):
        os.set_blocking(fd, False)  # master_listen_init(): NON_BLOCKING, workers race for accept()


def _dupfd(fd: int, low: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (ValueError, OSError):
        return 4096


RUN_OPTIONS = ("holder", "flow", "maxproc", "max-use", "unit", "stamp", "lock", "forks")


def cmd_run(argv: list[str]) -> NoReturn:
    opts, command = _options(argv, RUN_OPTIONS)
    if len(command) < 2 or not {"holder", "flow", "unit"} <= set(opts):
        raise BridgeError("usage: run --holder SOCK --flow FIFO --unit NAME [--maxproc N] [--stamp F] [--lock F] "
                          "-- PATH ARGV0 [ARGS...]")
    sources = listen_fds(dict(os.environ), os.getpid())
    if not sources:
        raise BridgeError(f"{opts['unit']}: no listening socket from systemd (LISTEN_FDS)")
    mine, peer = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    message: dict[str, str] = {k: opts[k] for k in ("unit", "maxproc", "stamp", "lock") if k in opts}
    if "max-use" in opts:
        message["max_use"] = opts["max-use"]
    fds = [peer.fileno()]
    control = None
    if "forks" in opts:
        # This process stays as the unit's main process and forks the daemons; the holder asks it for
        # more over this channel when clients wait.
        control, control_peer = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        message["control"] = "1"
        fds.append(control_peer.fileno())
    try:
        more = register(opts["holder"], message, fds + sources)
    finally:
        peer.close()
        if control is not None:
            control_peer.close()
    os.umask(0o077)
    if control is not None:
        _supervise(opts, command, sources, mine, more, control)
    _exec_daemon(opts["flow"], mine.detach(), sources, command)


def _exec_daemon(flow: str, status_fd: int, sources: list[int], command: list[str]) -> NoReturn:
    arrange_fds(flow, status_fd, sources)
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    os.execv(command[0], command[1:])


def _supervise(opts: dict[str, str], command: list[str], sources: list[int], first: _socket.socket,
               more: int, control: _socket.socket) -> NoReturn:
    """The main process of a pool unit that may run several daemons (--forks): it forks them as master(8)
    does, where a unit start per daemon costs ~100 ms of CPU (mount namespace, system call filter,
    interpreter). The holder grants daemons (at registration, and later with "fork N" on ``control``)
    while clients wait; each gets its own status channel, registered by this process. It exits when its
    last daemon has, with 1 if one of them ended abnormally (Restart=on-failure, the crash gate)."""
    import select

    children: set[int] = set()
    failed = 0

    def spawn(channels: list[_socket.socket]) -> None:
        for channel in channels:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                try:
                    _exec_daemon(opts["flow"], channel.detach(), sources, command)
                finally:
                    os._exit(127)
            children.add(pid)
            channel.close()  # the daemon's copy is the only one: the holder sees it exit

    def siblings(count: int) -> list[_socket.socket]:
        out = []
        for _unused in range(count):
            mine, peer = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                register(opts["holder"], {"unit": opts["unit"], "sibling": "1"}, [peer.fileno()])
            except BridgeError as exc:
                _log(f"{opts['unit']}: {exc}")
                mine.close()
                break
            finally:
                peer.close()
            out.append(mine)
        return out

    spawn([first] + siblings(more))
    poller = select.poll()
    poller.register(control.fileno(), select.POLLIN)
    buf = b""
    while True:
        while children:  # reap
            pid, status = os.waitpid(-1, os.WNOHANG)
            if not pid:
                break
            children.discard(pid)
            if os.waitstatus_to_exitcode(status) not in (0, -15):  # SIGTERM: systemctl stop (SuccessExitStatus=15)
                failed = 1
        # The last daemon is gone: take a request that crossed that exit, then end the unit.
        if poller.poll(0 if not children else 500):
            try:
                chunk = control.recv(256)
            except OSError:
                chunk = b""
            if not chunk:
                poller.unregister(control.fileno())  # the holder is gone or reloaded: no more daemons
                control.close()
                poller = select.poll()
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                word, _space, count = line.partition(b" ")
                if word == b"fork" and count.isdigit():
                    spawn(siblings(int(count)))
        elif not children:
            os._exit(failed)


# --------------------------------------------------------------------------- holder: who registers
#
# The holder socket is root:mail_group 0660, so any process of mail_owner (a compromised smtpd is one)
# can connect. What a registration says is therefore never trusted: the unit comes from the kernel
# (SO_PEERCRED -> /proc/PID/cgroup), and what the holder does for that unit (maxproc, max_use, stamp,
# lock file) from the unit set the generator wrote (root's, in /run or /var/lib).

SO_PEERPIDFD = 77  # Linux 6.5: a pidfd of the very process that connected (SO_PEERCRED only has its pid)


def cgroup_path(text: str) -> str:
    """The systemd cgroup in /proc/PID/cgroup: the unified hierarchy's (v2, hybrid), else name=systemd (v1)."""
    legacy = ""
    for line in text.splitlines():
        hierarchy, _sep, rest = line.partition(":")
        controllers, sep, path = rest.partition(":")
        if not sep:
            continue
        if hierarchy == "0" and not controllers:
            return path
        if controllers == "name=systemd":
            legacy = path
    return legacy


def peer_unit(path: str, holder_path: str) -> str:
    """The unit a process runs in, if its cgroup is beside the holder's (in the instance's slice), else ''.

    The cgroup of a process is a leaf, named after its unit; only root (systemd) creates cgroups in the
    instance's slice. Comparing whole paths, not names, also refuses a look-alike below a delegated
    subtree (user@.service), where a user may create cgroups of any name.
    """
    parent, _sep, leaf = path.rpartition("/")
    holder_parent = holder_path.rpartition("/")[0]
    if not leaf or not holder_parent or parent != holder_parent or not leaf.endswith(".service"):
        return ""
    return leaf


def exec_words(text: str) -> list[str]:
    """An ExecStart= command line as systemd splits it, for what _masterless_units.exec_quote writes (quotes, C escapes,
    %% and $$); other specifiers (%n) stay as they are."""
    words: list[str] = []
    word: list[str] = []
    quoted = started = False
    pos = 0
    while pos < len(text):
        char, pair = text[pos], text[pos:pos + 2]
        pos += 1
        if char == "\\" and pos < len(text):
            nxt = text[pos]
            if nxt == "x" and len(text[pos + 1:pos + 3]) == 2:
                byte = int(text[pos + 1:pos + 3], 16)
                word.append(chr(byte) if byte < 0x80 else chr(0xDC00 + byte))  # surrogateescape, as read
                pos += 3
            else:
                word.append({"t": "\t", "n": "\n", "r": "\r"}.get(nxt, nxt))
                pos += 1
            started = True
        elif pair in ("%%", "$$"):
            word.append(char)
            pos += 1
            started = True
        elif char == '"':
            quoted, started = not quoted, True
        elif char in " \t" and not quoted:
            if started:
                words.append("".join(word))
            word, started = [], False
        else:
            word.append(char)
            started = True
    if started:
        words.append("".join(word))
    return words


def pool_specs(files: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Unit file name -> the options of its `bridge run` ExecStart= (maxproc, max-use, stamp, lock)."""
    specs: dict[str, dict[str, str]] = {}
    for name, content in files.items():
        if "/" in name or not name.endswith(".service"):
            continue
        for line in content.splitlines():
            if not line.startswith("ExecStart="):
                continue
            words = exec_words(line[len("ExecStart="):])
            if "run" not in words:
                continue
            try:
                opts, command = _options(words[words.index("run") + 1:], RUN_OPTIONS)
            except BridgeError:
                continue
            if command and "holder" in opts:
                specs[name] = {**opts, "daemon": os.path.basename(command[0])}
    return specs


def _library(name: str) -> ModuleType:
    """A module of the library beside this file: the installed bridge is a symlink into its package."""
    import importlib

    if __package__:
        return importlib.import_module(f"{__package__}.{name}")
    here = os.path.dirname(os.path.realpath(__file__))
    if os.path.dirname(here) not in sys.path:
        sys.path.insert(0, os.path.dirname(here))
    return importlib.import_module(f"{os.path.basename(here)}.{name}")


def _set_paths(name: str) -> list[str]:
    generator = _library("_masterless_generator")
    return [os.path.join(d, name, "units.set") for d in (generator.RUN_DIR, generator.STATE_DIR)]


def _encode_specs(specs: Mapping[str, Mapping[str, str]]) -> bytes:
    # Unit lines hold no NUL and no newline (the generator refuses them in any value).
    return "\n".join("\0".join([unit, *(f"{k}={v}" for k, v in opts.items())]) for unit, opts in specs.items()).encode()


def _decode_specs(data: bytes) -> dict[str, dict[str, str]]:
    specs: dict[str, dict[str, str]] = {}
    for line in data.decode().split("\n") if data else ():
        unit, *pairs = line.split("\0")
        specs[unit] = dict(pair.partition("=")[::2] for pair in pairs)
    return specs


class _SetReader:
    """The pools of one unit set file, encoded (run by _in_child)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> bytes:
        return _encode_specs(pool_specs(_library("_masterless_generator").load_set(self.path)))


def _in_child(work: Callable[[], bytes]) -> bytes:
    """What ``work`` returns, computed in a forked child: the holder lives as long as the instance, and
    what the work imports (the generator's library, subprocess) would otherwise stay in its memory."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(read_end)
            view = memoryview(work())
            while view:
                view = view[os.write(write_end, view):]
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
            code = 1
            try:
                os.write(write_end, _oneline(str(exc) or type(exc).__name__).encode(errors="replace")[:4096])
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    try:
        while True:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _unused, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if status != 0:
        raise BridgeError(data.decode(errors="replace") or f"child exited with status {status}")
    return data


def _read_small(path: str, limit: int = 65536) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return os.read(fd, limit).decode(errors="replace")
    finally:
        os.close(fd)


def _oneline(text: str) -> str:
    """A peer's text for one journal line: no line breaks or control characters, bounded."""
    return "".join(c if c.isprintable() else "?" for c in text[:300])


def _socket_kind(fd: int) -> tuple[int, int] | None:
    """(family, type) of a descriptor, None if it is not a socket; the descriptor stays the caller's."""
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        return None
    import socket

    sock = socket.socket(fileno=fd)
    try:
        return int(sock.family), int(sock.type)
    finally:
        sock.detach()


def _start_time(pid: int, proc: str = "/proc") -> str:
    """The process's start time (/proc/PID/stat field 22): with the pid, it names one process."""
    try:
        with open(os.path.join(proc, str(pid), "stat"), "rb") as stat_file:
            fields = stat_file.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return ""


def _alive(pidfd: int) -> bool:
    """A pidfd is readable once its process has exited."""
    import select

    poller = select.poll()  # select() refuses descriptors above 1023
    poller.register(pidfd, select.POLLIN)
    return not poller.poll(0)


def _reaped(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


# Daemons on every way into the queue (smtpd, qmqpd, pickup -> cleanup, which asks trivial-rewrite; proxymap
# serves most lookup tables): started together with the first pool after an idle period.
COMPANION_DAEMONS = ("cleanup", "trivial-rewrite", "proxymap")


class Worker:
    def __init__(self, pid: int, unit: str, peer: socket.socket) -> None:
        self.pid = pid
        self.unit = unit
        self.peer = peer
        self.start = ""
        self.avail = True  # master_avail_more(): a new child counts as available
        self.buf = b""
        self.uses = 0
        self.last = False  # serving its max_use-th client: exits afterwards


class Pool:
    """The workers of one master.cf entry (one unit, or prefix@N.service instances)."""

    def __init__(self, prefix: str, maxproc: int, template: bool) -> None:
        self.prefix = prefix
        self.maxproc = maxproc
        self.max_use = 0  # single-server daemons: clients served before a voluntary exit
        self.one_client = False  # single-server: a worker serves one client at a time
        self.template = template
        self.forks = 0  # daemons one unit of the pool may run (--forks in the unit set; 0: one per unit)
        self.supervisors: dict[str, socket.socket] = {}  # unit -> control channel of its forking bridge
        self.workers: dict[int, Worker] = {}  # by peer fd
        self.pending: dict[str, float] = {}  # unit -> deadline
        self.listen: list[socket.socket] = []
        self.watching = False
        self.dirty = False  # records arrived since the last look
        self.busy_seen: set[int] = set()  # workers that took a client since the last look
        self.retiring: list[str] = []  # workers serving their max_use-th client
        self.waiting_since = 0.0  # monotonic time clients were first seen waiting for a worker (0: none)

    def avail(self) -> int:
        return sum(1 for w in self.workers.values() if w.avail)

    def room(self) -> int:
        used = len(self.workers) + len(self.pending)
        return (1 << 30) if self.maxproc == 0 else max(self.maxproc - used, 0)

    def grant_keys(self, unit: str) -> list[str]:
        """The pending entries of daemons granted to ``unit``'s bridge (UNIT#N)."""
        return [key for key in self.pending if key.startswith(unit + "#")]

    def numbers(self) -> set[int]:
        taken = set()
        for unit in [w.unit for w in self.workers.values()] + list(self.pending):  # pending: UNIT or UNIT#N (a grant)
            number = unit.rpartition("@")[2].split(".")[0]
            if number.isdigit():
                taken.add(int(number))
        return taken


class Reaper:
    """Closes, in a child process, what peers handed in.

    The last close of a socket whose sender set SO_LINGER (or of a connection with descriptors still
    queued on it, nested to any depth) blocks for as long as the sender chose: the holder must never
    wait on a peer. Each descriptor goes to the closer over a socketpair, the holder drops its own copy
    (never the last reference: the message holds one), then tells the closer to close. A closer that
    has not answered within STUCK seconds is killed (a fatal signal ends such waits) and replaced.
    """

    STUCK = 1.0
    IDLE = 10.0  # an idle closer is ended: a fork of the holder, it would double its memory for nothing

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.pid = 0
        self.sent = self.acked = 0
        self.since = 0.0  # when the oldest unanswered close was sent

    def close(self, what: int | socket.socket) -> None:
        import socket

        fd = what.detach() if not isinstance(what, int) else what
        if fd < 0:
            return
        _unlinger(fd)
        self.check()
        for _attempt in range(2):
            if self.sock is None and not self._spawn():
                break
            if self.sock is None:
                break
            try:
                socket.send_fds(self.sock, [b"f"], [fd])
            except OSError:  # its queue is full: it is stuck
                self._kill()
                continue
            os.close(fd)  # the message holds the file: this is not its last reference
            self._tell(b"c")
            return
        _log("holder: no closer process: closing in the holder")
        os.close(fd)

    def _tell(self, what: bytes) -> None:
        import time

        if self.sock is None:
            return
        try:
            self.sock.send(what)
        except OSError:
            self._kill()
            return
        if self.sent == self.acked:
            self.since = time.monotonic()
        self.sent += 1

    def check(self) -> None:
        """Count the closer's answers; kill it if it is stuck."""
        import time

        if self.sock is None:
            return
        while True:
            try:
                answer = self.sock.recv(64)
            except BlockingIOError:
                break
            except OSError:
                answer = b""
            if not answer:
                self._kill()
                return
            self.acked += len(answer)
            self.since = time.monotonic()
        if self.sent > self.acked and time.monotonic() - self.since > self.STUCK:
            _log(f"holder: the closer is stuck on a descriptor a peer handed in: replaced ({self.sent - self.acked} left to it)")
            self._kill()
        elif self.sent == self.acked and time.monotonic() - self.since > self.IDLE:
            self._kill()  # the next close spawns a new one

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything handed in is closed (tests)."""
        import time

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.check()
            if self.sent == self.acked:
                return True
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        self.flush(1.0)
        self._kill()

    def _spawn(self) -> bool:
        import socket

        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            pid = os.fork()
        except OSError as exc:
            _log(f"holder: cannot start a closer: {exc}")
            return False
        if pid == 0:  # pragma: no cover - the child
            try:
                _closer(theirs)
            finally:
                os._exit(0)
        theirs.close()
        ours.setblocking(False)
        self.sock, self.pid, self.sent, self.acked = ours, pid, 0, 0
        return True

    def _kill(self) -> None:
        import signal

        if self.sock is not None:
            self.sock.close()  # its end's queue is released in the closer's own exit
            self.sock = None
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
            self.pid = 0
        self.sent = self.acked = 0


def _closer(sock: socket.socket) -> None:
    """The closer process: keep only its socket, close each descriptor once the holder dropped its copy."""
    import signal

    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    keep = sock.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, _max_fd())
    sock.setblocking(True)
    held: list[int] = []
    while True:
        data, ancillary, _flags, _addr = sock.recvmsg(16, STATUS_CMSG_SPACE)
        held += _received_fds(ancillary)
        if not data:
            return
        if data == b"c":
            for fd in held:
                try:
                    os.close(fd)
                except OSError:
                    pass
            sock.send(b"a" * max(1, len(held)))
            held = []


def _received_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    import array
    import socket

    fds: list[int] = []
    for level, kind, cmsg in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += array.array("i", cmsg[:len(cmsg) - len(cmsg) % 4])
    return fds


def _unlinger(fd: int) -> None:
    """Undo a sender's SO_LINGER on a socket (a plain file or pipe has none): the close then returns at once."""
    import socket

    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 0, 0))
    except OSError:
        pass
    finally:
        sock.detach()


class Holder:
    def __init__(self, *, listener: socket.socket, flow: str, stamps: str, queue_directory: str,
                 owner: str, group: str, systemctl: str, target: str = "", data_directory: str = "",
                 units_set: tuple[str, ...] = (), proc: str = "/proc") -> None:
        import grp
        import pwd
        import selectors

        self.listener = listener
        self.flow = flow
        self.stamps = stamps
        self.queue_directory = queue_directory
        self.uid = pwd.getpwnam(owner).pw_uid
        self.gid = grp.getgrnam(group).gr_gid
        self.systemctl = systemctl
        self.target = target
        self.data_directory = data_directory
        self.locks: list[int] = []
        self.pools: dict[str, Pool] = {}
        self.peers: dict[int, tuple[Pool, Worker]] = {}
        self.children: list[int] = []  # systemctl processes not yet reaped
        self.sel = selectors.DefaultSelector()
        self.event_read = selectors.EVENT_READ
        self.reload_requested = False
        self.stop_requested = False  # postfix stop: stop the whole instance
        self.exit_requested = False  # systemd stops the holder
        self.flow_fd = -1
        self.verbose = False
        self.diag: socket.socket | None = None  # sock_diag, for the backlog of unix listeners
        self.diag_tried = False
        # Who may register: units of this instance (own_unit) that run beside the holder, as the unit set says.
        self.prefix = target[:-len(".target")] if target.endswith(".target") else ""
        self.units_set = units_set
        self.proc = proc
        self.cgroup = ""  # the holder's own cgroup (prepare)
        self.specs: tuple[tuple[object, ...], dict[str, dict[str, str]]] = ((), {})
        self.controls: dict[int, tuple[socket.socket, float]] = {}  # control connections not yet answered
        # unit -> (pid, start time, daemons left): what a unit's bridge may still register beside its first daemon
        self.grants: dict[str, tuple[int, str, int]] = {}
        # unit -> (pid, start time) of its forking bridge: while it lives, nothing else of the unit registers
        self.bridges: dict[str, tuple[int, str]] = {}
        self.grant_seq = 0
        self.busy_pools: set[str] = set()  # template pools that ran since the instance was last idle
        self.last_busy: set[str] = set()  # ... and in the busy period before
        self.reaper = Reaper()
        self.refusals = [-REFUSALS_WINDOW, 0, 0]  # window start, lines in it, lines suppressed

    # -- setup
    def prepare(self) -> None:
        """Master's locks, the flow FIFO (kept open so tokens survive idle periods), fresh stamps."""
        self.locks += self._master_lock(os.path.join(self.queue_directory, "pid"), "master.pid", mode=0o644)
        if self.data_directory:
            # master.c opens it as mail_owner: a root-owned one would stop a later switch to master(8).
            self.locks += self._master_lock(self.data_directory, "master.lock", mode=0o600, owner=(self.uid, self.gid))
        try:
            self.cgroup = cgroup_path(_read_small(os.path.join(self.proc, "self", "cgroup")))
        except OSError as exc:
            _log(f"holder: cannot read its own cgroup ({exc}): every registration will be refused")
        try:
            st = os.lstat(self.flow)
            if not stat.S_ISFIFO(st.st_mode):
                raise BridgeError(f"{self.flow} exists and is not a FIFO")
        except FileNotFoundError:
            os.mkfifo(self.flow, 0o660)
        os.chown(self.flow, 0 if os.geteuid() == 0 else -1, self.gid)
        os.chmod(self.flow, 0o660)
        self.flow_fd = os.open(self.flow, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        os.makedirs(self.stamps, mode=0o755, exist_ok=True)
        for name in os.listdir(self.stamps):
            os.unlink(os.path.join(self.stamps, name))  # like a master restart: '?' timers wait again
        self.listener.setblocking(False)
        self.sel.register(self.listener, self.event_read, ("accept", None))

    @staticmethod
    def _master_lock(directory: str, name: str, *, mode: int, owner: tuple[int, int] | None = None) -> list[int]:
        """open_lock() as master.c does it (flock on Linux); master -t then reports 'running'.

        The file found at the name is never written, truncated or chowned: data_directory is
        mail_owner's, and anything there may be a symlink or a hard link to a file of root's. It is only
        tested for master's lock (a regular file with one link, reopened through its own descriptor), and
        then replaced by one the holder creates itself (O_EXCL: whatever appears in between fails the
        start). The old one stays locked too: a master(8) that opened it in between still finds it locked.
        """
        import fcntl

        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        path = os.path.join(directory, name)
        held: list[int] = []
        try:
            old = Holder._old_lock(dfd, name, path)
            if old >= 0:
                held.append(old)
            try:
                os.unlink(name, dir_fd=dfd)
            except FileNotFoundError:
                pass
            try:
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
            except FileExistsError:
                raise BridgeError(f"{path} reappeared while the holder replaced it; not started") from None
            held.insert(0, fd)
            if owner and os.geteuid() == 0:
                os.fchown(fd, *owner)  # the file just created, by its descriptor
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, f"{os.getpid():>{struct.calcsize('L') * 4}}\n".encode())
        except BaseException:
            for fd in held:
                os.close(fd)
            raise
        finally:
            os.close(dfd)
        return held

    @staticmethod
    def _old_lock(dfd: int, name: str, path: str) -> int:
        """The lock file at the name, locked by the holder; -1 if there is none master(8) could hold."""
        import fcntl

        try:
            ref = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except FileNotFoundError:
            return -1
        try:
            st = os.fstat(ref)
            # master's safe_open() refuses anything else: a symlink, FIFO or hard link is no lock of its.
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                _log(f"holder: {path} is not a regular file with one link; replaced, never opened")
                return -1
            fd = os.open(f"/proc/self/fd/{ref}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # this very inode
        finally:
            os.close(ref)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BridgeError(f"{path} is locked: master(8) runs for this instance; stop it first") from None
        return fd

    # -- main loop
    def serve(self) -> None:
        import signal
        import socket
        import time

        # Wake the selector at once on a signal (select() would otherwise sleep out its timeout).
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno())
        self.sel.register(wake_r, self.event_read, ("wake", None))
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "reload_requested", True))
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stop_requested", True))
        signal.signal(signal.SIGUSR1, lambda *_: setattr(self, "exit_requested", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "exit_requested", True))
        while not self.exit_requested:
            if self.reload_requested:
                self.reload_requested = False
                self.reload(refresh=True)
            if self.stop_requested:
                self.stop_requested = False
                _log(f"stop requested (postfix stop): stopping {self.target or 'the instance'}")
                if self.target:
                    self._start(["stop", "--no-block", self.target], verb=None)
                else:
                    break
            drained = False
            for key, _unused in self.sel.select(timeout=self._timeout()):
                what, obj = key.data
                if what == "accept":
                    self._accept()
                elif what == "control" and key.fileobj.fileno() in self.controls:  # type: ignore[union-attr]
                    self._control(key.fileobj)  # type: ignore[arg-type]
                elif what == "peer" and key.fileobj.fileno() in self.peers:  # type: ignore[union-attr]
                    self._drain(key.fileobj)  # type: ignore[arg-type]
                    drained = True
                elif what == "listen":
                    self._demand(obj)
                elif what == "supervisor":
                    self._supervisor_event(*obj)
                elif what == "wake":
                    try:
                        wake_r.recv(256)
                    except BlockingIOError:
                        pass
            for pool in self.pools.values():
                if pool.dirty:
                    self._look(pool)
                elif pool.waiting_since:
                    self._recheck(pool)
            self._tick()
            self.reaper.check()
            if drained:
                # Under load every client sends two records per daemon: take them in batches
                # instead of waking per record (the holder is Python; master is C).
                time.sleep(COALESCE)

    def _accept(self) -> None:
        import time

        # The whole backlog (64) per pass: a client flooding connect() must not keep others waiting in it.
        for _unused in range(64):
            try:
                conn, _addr = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE and the like: make room, and do not spin on a readable listener
                _log(f"holder: accept: {exc}")
                if self.controls:
                    self._close_control(min(self.controls, key=lambda fd: self.controls[fd][1]))
                time.sleep(0.05)
                return
            if len(self.controls) >= MAX_CONTROLS:  # a client that connects and says nothing holds an fd
                self._close_control(min(self.controls, key=lambda fd: self.controls[fd][1]))
            conn.setblocking(False)
            self.sel.register(conn, self.event_read, ("control", None))
            self.controls[conn.fileno()] = (conn, time.monotonic() + CONTROL_TIMEOUT)

    def _close_control(self, fd: int) -> None:
        conn, _deadline = self.controls.pop(fd)
        self.sel.unregister(conn)
        self.reaper.close(conn)

    def _control(self, conn: socket.socket) -> None:
        """One request. Whatever it holds, the holder lives on: an error closes the request's own
        descriptors (none of them is in the selector yet), is logged once and answered."""
        import socket

        self.controls.pop(conn.fileno(), None)
        self.sel.unregister(conn)
        fds: list[int] = []
        pid = uid = -1
        try:
            pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            # Room for all a message may carry (SCM_MAX_FD): what does not fit the kernel would close here.
            data, ancillary, flags, _unused = conn.recvmsg(REQUEST_MAX, STATUS_CMSG_SPACE, socket.MSG_CMSG_CLOEXEC)
            fds = _received_fds(ancillary)
            if len(fds) > MAX_FDS:
                raise BridgeError(f"request with more than {MAX_FDS} descriptors")
            reply = self._request(conn, data, fds, flags, pid=pid, uid=uid)
        except Exception as exc:  # noqa: BLE001 - no request may end the holder (and with it the instance)
            for fd in fds:
                self.reaper.close(fd)
            reason = _oneline(str(exc) or type(exc).__name__)
            self._log_refusal(f"holder: refused a request of pid {pid} uid {uid}: {reason}")
            reply = f"ERR refused: {reason}"
        try:
            conn.setblocking(True)
            conn.settimeout(2.0)
            conn.send(reply.encode(errors="replace"))
        except OSError:
            pass
        self.reaper.close(conn)  # descriptors still queued on it are released by this close

    def _log_refusal(self, line: str) -> None:
        """At most REFUSALS_LOGGED lines per REFUSALS_WINDOW seconds: a flood must not drown the journal."""
        import time

        now = time.monotonic()
        if now - self.refusals[0] >= REFUSALS_WINDOW:
            if self.refusals[2]:
                _log(f"holder: {self.refusals[2]} more refused requests not logged")
            self.refusals = [now, 0, 0]
        self.refusals[1] += 1
        if self.refusals[1] <= REFUSALS_LOGGED:
            _log(line)
        else:
            self.refusals[2] += 1

    def _request(self, conn: socket.socket, data: bytes, fds: list[int], flags: int, *, pid: int, uid: int) -> str:
        """Answer one request; descriptors it keeps are removed from ``fds`` (the rest are the caller's)."""
        import socket

        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise BridgeError(f"request longer than {REQUEST_MAX} bytes or with more than {MAX_FDS} descriptors")
        message = decode(data)
        if "unit" in message:
            return self._register(conn, pid, message, fds)
        if fds:
            raise BridgeError("descriptors sent with a command")
        command = message.get("command")
        if command == "status":
            import json

            return json.dumps(self.status())
        if command == "retire" and uid != 0:
            # ExecStop= runs as the unit's user: it may retire the daemons of its own unit only.
            unit, target = self._identify(conn, pid), int(message.get("pid", ""))
            if unit in self.bridges:  # forking units have no ExecStop= retire: only a daemon would ask
                raise BridgeError(f"{unit} runs several daemons: none of them retires the others")
            if self.retire(target, unit=unit) != "OK":
                raise BridgeError(f"{unit} has no daemon with pid {target} to retire")
            return "OK"
        if uid != 0:
            raise BridgeError(f"'{command}' needs root")
        if command == "retire":
            return self.retire(int(message.get("pid", "")))
        if command == "reload":
            self.reload_requested = True
            return "OK"
        raise BridgeError(f"unknown request {data[:80]!r}")

    def _identify(self, conn: socket.socket, pid: int) -> str:
        """The unit the peer runs in, from the kernel: never from what it says.

        SO_PEERCRED's pid is the one of connect() time. With SO_PEERPIDFD (Linux 6.5) the pidfd is that
        very process, and its being alive after /proc/PID/cgroup was read proves the read was of it.
        Before 6.5 the pidfd is of whoever holds the pid now: a peer that exits at once and whose pid
        another unit's process gets before the holder looks (pid_max wraps first) would be taken for that
        unit. That is the residual risk, and it grants only that unit's own pool, from the unit set.
        """
        import socket

        if not self.cgroup:
            raise BridgeError("the holder does not know its own cgroup")
        try:
            pidfd = int(struct.unpack("i", conn.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD, 4))[0])
        except OSError:  # ENOPROTOOPT before Linux 6.5
            pidfd = os.pidfd_open(pid)
        try:
            path = cgroup_path(_read_small(os.path.join(self.proc, str(pid), "cgroup")))
            if not _alive(pidfd):
                raise BridgeError(f"pid {pid} exited before it could be identified")
        finally:
            os.close(pidfd)
        unit = peer_unit(path, self.cgroup)
        if not unit or not own_unit(self.prefix, unit):
            raise BridgeError(f"pid {pid} runs in {_oneline(path) or '?'}, not in a unit of {self.prefix or 'this instance'}")
        return unit

    def _spec(self, unit: str) -> tuple[dict[str, str], str, bool]:
        """What the unit set says about a pool unit: its `bridge run` options, the pool prefix, template or not."""
        stem, at, _number = unit.partition("@")
        template = bool(at)
        spec = self._pool_specs().get(f"{stem}@.service" if template else unit)
        if spec is None:
            raise BridgeError(f"{unit} is not a pool service of this instance's unit set")
        return spec, stem if template else unit[:-len(".service")], template

    def _pool_specs(self) -> dict[str, dict[str, str]]:
        """The pools of the unit set the generator wrote (its copy in /run, else the module's in /var/lib)."""
        paths = self.units_set
        if not paths:
            name = os.path.basename(os.path.dirname(self.flow))
            paths = self.units_set = tuple(_in_child(lambda: "\0".join(_set_paths(name)).encode()).decode().split("\0"))
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                continue
            if os.geteuid() == 0 and (st.st_uid != 0 or st.st_mode & 0o022):
                _log(f"holder: {path} is not root's alone; ignored")
                continue
            key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if key == self.specs[0]:
                return self.specs[1]
            try:
                # The generator's modules would stay in the holder's memory for good: read the set in a child.
                specs = _decode_specs(_in_child(_SetReader(path)))
            except Exception as exc:  # noqa: BLE001 - a damaged set, whatever load_set raises, is no set
                _log(f"holder: unit set {path}: {exc}")
                continue
            self.specs = (key, specs)
            return self.specs[1]
        raise BridgeError(f"no usable unit set ({' '.join(paths)})")

    def _register(self, conn: socket.socket, pid: int, message: dict[str, str], fds: list[int]) -> str:
        import socket

        unit = self._identify(conn, pid)
        if message.get("unit") != unit:
            raise BridgeError(f"pid {pid} of {unit} registers as {_oneline(message.get('unit', ''))[:120]!r}")
        spec, prefix, template = self._spec(unit)
        maxproc = int(spec.get("maxproc", "1"))
        max_use = int(spec.get("max-use", "0") or 0)
        if not fds:
            raise BridgeError("registration without a status socket")
        kinds = [_socket_kind(fd) for fd in fds]
        if kinds[0] != (socket.AF_UNIX, socket.SOCK_STREAM):
            raise BridgeError("the status descriptor is not a unix stream socket")
        control = message.get("control") == "1"
        if control and (not spec.get("forks") or not template or len(fds) < 2
                        or kinds[1] != (socket.AF_UNIX, socket.SOCK_STREAM)):
            raise BridgeError(f"{unit} may not run several daemons, or its control descriptor is not a unix stream socket")
        for number, (fd, kind) in enumerate(zip(fds, kinds), start=1):
            if kind is None and not stat.S_ISFIFO(os.fstat(fd).st_mode):  # fifo services listen on a FIFO
                raise BridgeError(f"descriptor {number} of {len(fds)} is neither a socket nor a FIFO")
        sibling = message.get("sibling") == "1"
        if sibling:
            # Only the very process the holder granted more daemons to (its bridge, same pid and start time).
            pid_granted, start_granted, left = self.grants.get(unit, (0, "", 0))
            if pid != pid_granted or left <= 0 or _start_time(pid) != start_granted or len(fds) != 1:
                raise BridgeError(f"pid {pid} of {unit} registers a further daemon without a grant")
        bridge = self.bridges.get(unit)
        if bridge and bridge[0] != pid and _start_time(bridge[0]) == bridge[1]:
            # Its daemons' registrations may all be gone (retired, ended, a closed channel) while one of them
            # lives on: it must not register in their place and be granted daemons of its own.
            raise BridgeError(f"pid {pid} of {unit} registers while the unit's bridge (pid {bridge[0]}) runs")
        for _old_pool, old in self.peers.values():
            # A unit runs one daemon (or the ones granted to its bridge): while it lives, nothing else in its
            # cgroup (a child it forked) may register, so no peer makes the holder keep a descriptor per
            # process, or drop the daemon.
            if old.unit == unit and old.pid != pid and old.start and _start_time(old.pid) == old.start:
                raise BridgeError(f"{unit} has a registered daemon already (pid {old.pid})")
        if spec.get("stamp"):
            self._touch_stamp(spec["stamp"])
        if spec.get("lock"):
            self._lock_file(spec["lock"])
        # Everything is checked: from here on nothing depends on the request's content.
        if not sibling:
            for old_pool, old in [v for v in self.peers.values() if v[1].pid == pid or v[1].unit == unit]:
                self._forget(old_pool, old)  # a process registers once; a unit's dead daemon is replaced
                self._update(old_pool)
            self.grants.pop(unit, None)
        idle = template and not sibling and not any(p.workers for p in self.pools.values() if p.template)
        pool = self.pools.get(prefix)
        if pool is None:
            pool = self.pools[prefix] = Pool(prefix, maxproc, template=template)
        pool.maxproc = maxproc
        pool.max_use = max_use
        pool.one_client = "max-use" in spec
        pool.forks = int(spec.get("forks", "0") or 0) if template and pool.one_client else 0
        if sibling:
            pid_granted, start_granted, left = self.grants[unit]
            self.grants[unit] = (pid_granted, start_granted, left - 1)
            for key in pool.grant_keys(unit)[:1]:
                del pool.pending[key]
        else:
            pool.pending.pop(unit, None)
            old_control = pool.supervisors.pop(unit, None)
            if old_control is not None:  # a new first daemon: what the old bridge was granted lapses
                self._drop_supervisor(pool, unit, old_control)
        peer = socket.socket(fileno=fds[0])
        try:
            peer.setblocking(False)
            self.sel.register(peer, self.event_read, ("peer", None))
        except BaseException:
            peer.detach()  # fds[0] stays the caller's to close
            raise
        worker = Worker(pid, unit, peer)
        worker.start = _start_time(pid)  # the pid alone could be another process's later
        pool.workers[peer.fileno()] = worker
        self.peers[peer.fileno()] = (pool, worker)
        if control:
            old_control = pool.supervisors.pop(unit, None)
            if old_control is not None:
                self._drop_supervisor(pool, unit, old_control)
            channel = socket.socket(fileno=fds[1])
            channel.setblocking(False)
            self.sel.register(channel, self.event_read, ("supervisor", (pool, unit)))
            pool.supervisors[unit] = channel
            self.bridges[unit] = (pid, worker.start)
        extra = fds[2:] if control else fds[1:]
        if pool.template and not pool.listen and extra and None not in kinds:
            pool.listen = [socket.socket(fileno=fd) for fd in extra]
        else:
            for fd in extra:
                self.reaper.close(fd)
        fds.clear()
        more = self._grant(pool, unit, pid, worker.start) if control else 0
        self._update(pool)
        if idle:
            self._start_companions(prefix)
        if template:
            self.busy_pools.add(prefix)
        return f"OK fork={more}" if more else "OK"

    def _start_companions(self, prefix: str) -> None:
        """The first pool to start after the instance idled out: start, at once, the first unit of the pools
        the mail will need next, instead of one socket activation after the other (smtpd -> proxymap ->
        trivial-rewrite -> cleanup -> local took ~0.8 s, where master forks them in milliseconds). Those are
        the pools of the last busy period, and the daemons on every path in (cleanup, trivial-rewrite,
        proxymap); idle ones exit after max_idle."""
        import time

        if self.busy_pools:
            self.last_busy, self.busy_pools = self.busy_pools, set()
        try:
            specs = self._pool_specs()
        except BridgeError:
            return
        wanted = set(self.last_busy)
        wanted |= {name[:-len("@.service")] for name, spec in specs.items()
                   if name.endswith("@.service") and spec.get("daemon") in COMPANION_DAEMONS}
        units = []
        deadline = time.monotonic() + PENDING_TIMEOUT
        for other in sorted(wanted - {prefix}):
            pool = self.pools.get(other)
            if f"{other}@.service" in specs and not (pool and (pool.workers or pool.pending)):
                units.append(f"{other}@1.service")
                # Pending, as any unit the holder starts: a worker that registers again and again (each time
                # the only one) must not make the holder run systemctl per request.
                if pool is None:
                    pool = self.pools[other] = Pool(other, 0, template=True)  # its registration sets maxproc
                pool.pending[units[-1]] = deadline
        if units:
            if self.verbose:
                _log(f"{prefix}: first worker after an idle period; starting {' '.join(units)}")
            self._start(units)

    def _drop_supervisor(self, pool: Pool, unit: str, channel: socket.socket) -> None:
        """A forking bridge is gone (its daemons all ended) or is let go (reload): what it was granted lapses."""
        self.sel.unregister(channel)
        channel.close()
        self._drop_grant(pool, unit)

    def _drop_grant(self, pool: Pool, unit: str) -> None:
        for key in pool.grant_keys(unit):
            del pool.pending[key]
        self.grants.pop(unit, None)

    def _add_grant(self, pool: Pool, unit: str, pid: int, start: str, count: int) -> None:
        """``count`` more daemons for the bridge (pid, start time) of ``unit``, pending until they register."""
        import time

        left = self.grants.get(unit, (0, "", 0))[2]
        self.grants[unit] = (pid, start, left + count)
        deadline = time.monotonic() + PENDING_TIMEOUT
        for _unused in range(count):
            self.grant_seq += 1
            pool.pending[f"{unit}#{self.grant_seq}"] = deadline

    def _supervisor_event(self, pool: Pool, unit: str) -> None:
        channel = pool.supervisors.get(unit)
        if channel is None:
            return
        try:
            data = channel.recv(256)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # it sends nothing: readable means it ended
            del pool.supervisors[unit]
            self._drop_supervisor(pool, unit, channel)
            self.bridges.pop(unit, None)
            self._update(pool)

    def _fork_more(self, pool: Pool, count: int) -> int:
        """Ask the pool's running forking bridges for ``count`` more daemons; returns how many were asked."""
        asked = 0
        for unit, channel in list(pool.supervisors.items()):
            if asked >= count:
                break
            grant = self.grants.get(unit)
            running = sum(1 for w in pool.workers.values() if w.unit == unit)
            room = pool.forks - running - (grant[2] if grant else 0)
            take = min(room, count - asked)
            if take <= 0:
                continue
            pid, start = self.bridges.get(unit, (0, ""))  # the bridge, never a process that registered in its unit
            if not pid:
                continue
            try:
                channel.send(b"fork %d\n" % take)
            except OSError:
                continue
            self._add_grant(pool, unit, pid, start, take)
            asked += take
        return asked

    def _grant(self, pool: Pool, unit: str, pid: int, start: str) -> int:
        """Daemons the bridge of a just registered unit may fork beside its first: one per client still
        waiting (after the one this daemon takes, and those already on their way), as master_avail.c
        forks one per waiting client; at most --forks, and maxproc."""
        if not pool.forks or not pool.listen:
            return 0
        waiting = self._waiting(pool)
        more = min((waiting or 0) - 1 - len(pool.pending), pool.forks - 1, pool.room())
        if more <= 0:
            return 0
        self._add_grant(pool, unit, pid, start, more)
        if self.verbose:
            _log(f"{unit}: {waiting} clients wait; its bridge forks {more} more")
        return more

    def _touch_stamp(self, path: str) -> None:
        if os.path.dirname(os.path.normpath(path)) != os.path.normpath(self.stamps):
            raise BridgeError(f"stamp {path} is not in {self.stamps}")
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))

    def _lock_file(self, rel: str) -> None:
        """pid/<type>.<name> for a worker that opens it as mail_owner (pid/ is root's 0755).

        Only a file the holder creates itself is given away (O_EXCL, chowned by its descriptor). One
        that is already mail_owner's stays as it is; anything else (master(8)'s root-owned one) is
        replaced, never chowned.
        """
        head, _unused, name = rel.partition("/")
        if head != "pid" or not name or "/" in name or name.startswith(".") or "." not in name or name == "master.pid":
            raise BridgeError(f"bad lock file name {rel}")
        dfd = os.open(os.path.join(self.queue_directory, "pid"), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(name, flags, 0o600, dir_fd=dfd)
            except FileExistsError:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                owner = (self.uid, self.gid) if os.geteuid() == 0 else (st.st_uid, st.st_gid)
                if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and (st.st_uid, st.st_gid) == owner:
                    return
                os.unlink(name, dir_fd=dfd)
                fd = os.open(name, flags, 0o600, dir_fd=dfd)
            try:
                if os.geteuid() == 0:
                    os.fchown(fd, self.uid, self.gid)
            finally:
                os.close(fd)
        finally:
            os.close(dfd)

    def _drain(self, peer: socket.socket) -> None:
        import socket

        fd = peer.fileno()
        pool, worker = self.peers[fd]
        data = worker.buf
        while True:
            try:
                # Room for descriptors, so that the kernel does not drop (close) any here: they go to the reaper.
                chunk, ancillary, _flags, _addr = peer.recvmsg(65536, STATUS_CMSG_SPACE, socket.MSG_CMSG_CLOEXEC)
            except BlockingIOError:
                break
            except OSError:
                chunk, ancillary = b"", []
            for received in _received_fds(ancillary):
                self.reaper.close(received)
            if not chunk:
                self._forget(pool, worker)
                self._update(pool)
                return
            data += chunk
        whole = len(data) - len(data) % STATUS.size
        worker.buf = data[whole:]
        if not whole:
            return
        # Records are {pid, gen, avail}: only avail matters (its low byte: 0 TAKEN, 1 AVAIL).
        avail_bytes = data[8:whole:STATUS.size] if sys.byteorder == "little" else data[11:whole:STATUS.size]
        taken = avail_bytes.count(STAT_TAKEN)
        worker.avail = avail_bytes[-1] == STAT_AVAIL
        if taken:
            worker.uses += taken
            pool.busy_seen.add(fd)
            if pool.max_use and worker.uses >= pool.max_use and not worker.last:
                worker.last = True
                pool.retiring.append(worker.unit)
        pool.dirty = True

    def _look(self, pool: Pool) -> None:
        """Decide on growth after a batch of status records."""
        pool.dirty = False
        self._update(pool)
        if not (pool.template and pool.listen):
            return
        busy_seen, pool.busy_seen = pool.busy_seen, set()
        retiring, pool.retiring = pool.retiring, []
        # A worker serving its max_use-th (last) client gets its successor now: a unit start takes
        # 50-250 ms where master forks in a millisecond.
        if retiring:
            self._grow(pool, len(retiring), f"{' '.join(retiring)} serve their last client (max_use {pool.max_use})")
            return
        if pool.avail():
            self._recheck(pool)
            return
        wanted = self._wanted(pool)
        if wanted is not None:
            self._grow_for_waiting(pool, wanted)
        elif not pool.pending and pool.workers and all(fd in busy_seen or not w.avail for fd, w in pool.workers.items()):
            # Backlog unknown: grow one step earlier than master, when every worker took a client since
            # the last look.
            self._grow(pool, max(1, len(pool.workers) // 2), "every worker is or was just busy")

    def _grow_for_waiting(self, pool: Pool, wanted: int) -> None:
        """master_avail.c starts a process per waiting client; so does the holder, for all of them at
        once, counting those already on their way, once they have waited GROW_GRACE."""
        import time

        need = min(wanted - len(pool.pending), pool.room())
        if pool.forks and any("#" not in unit for unit in pool.pending):
            need = 0  # a unit is on its way: its registration takes what waits then
        now = time.monotonic()
        if need <= 0:
            pool.waiting_since = 0.0
        elif not pool.waiting_since:
            pool.waiting_since = now
        elif now - pool.waiting_since >= GROW_GRACE:
            pool.waiting_since = 0.0
            self._grow(pool, need, f"{wanted} clients wait")
        self._update(pool)

    def _recheck(self, pool: Pool) -> None:
        """After GROW_GRACE: do clients still wait?"""
        import time

        if not pool.waiting_since or time.monotonic() - pool.waiting_since < GROW_GRACE:
            return
        wanted = None if pool.avail() else self._wanted(pool)
        if wanted is None:
            pool.waiting_since = 0.0
            self._update(pool)
        else:
            self._grow_for_waiting(pool, wanted)

    def _timeout(self) -> float:
        import time

        since = [p.waiting_since for p in self.pools.values() if p.waiting_since]
        if not since:
            return 1.0
        return max(0.0, min(1.0, min(since) + GROW_GRACE - time.monotonic()))

    def _wanted(self, pool: Pool) -> int | None:
        """Workers the waiting clients need, or None if the kernel does not say how many wait.

        A single-server worker serves one client at a time: one per waiting client. A multi-server
        one (trivial-rewrite, proxymap) takes many clients and queues them only while it is inside
        one request, so one more at a time, as master forks one per wake-up of its listener.
        """
        waiting = self._waiting(pool)
        return waiting if waiting is None or pool.one_client else min(waiting, 1)

    def _waiting(self, pool: Pool) -> int | None:
        """Clients in the accept queues of the pool's listeners, or None if the kernel does not say."""
        if not self.diag_tried:
            import socket

            self.diag_tried = True
            try:
                self.diag = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
                self.diag.settimeout(1.0)
            except OSError as exc:
                _log(f"no sock_diag ({exc}): pools of unix services grow by doubling")
        total = 0
        for sock in pool.listen:
            try:
                count = listen_backlog(sock, self.diag)
            except OSError:
                count = None
            if count is None:
                return None
            total += count
        return total

    def _forget(self, pool: Pool, worker: Worker) -> None:
        fd = worker.peer.fileno()
        self.sel.unregister(worker.peer)
        self.reaper.close(worker.peer)
        pool.workers.pop(fd, None)
        self.peers.pop(fd, None)
        pool.busy_seen.discard(fd)

    # -- pool growth (master_avail.c: watch the listener only while nobody is idle)
    def _update(self, pool: Pool) -> None:
        # Not while clients are in their grace period: the listener stays readable, _recheck() looks again.
        want = (pool.template and bool(pool.listen) and pool.avail() == 0 and not pool.pending
                and not pool.waiting_since and pool.room() > 0 and bool(pool.workers))
        if want and not pool.watching:
            for sock in pool.listen:
                self.sel.register(sock, self.event_read, ("listen", pool))
            pool.watching = True
        elif not want and pool.watching:
            for sock in pool.listen:
                self.sel.unregister(sock)
            pool.watching = False

    def _demand(self, pool: Pool) -> None:
        """A client waits and every worker is busy: one worker per waiting client (or double the pool)."""
        wanted = self._wanted(pool)
        if wanted is None:
            self._grow(pool, max(2, len(pool.workers)), "all busy, a client waits")
        else:
            self._grow_for_waiting(pool, max(1, wanted))

    def _grow(self, pool: Pool, wanted: int, why: str) -> None:
        import time

        if pool.forks:
            # A forking pool asks its running bridges to fork (as master does); only what they have no room
            # for starts a unit, one: at its registration the holder grants it a daemon per waiting client.
            wanted -= self._fork_more(pool, min(wanted, pool.room()))
            if wanted <= 0:
                self._update(pool)
                return
            wanted = 1
        count = min(wanted, pool.room())
        free = [n for n in range(1, len(pool.workers) + len(pool.pending) + count + 2) if n not in pool.numbers()]
        units = [f"{pool.prefix}@{n}.service" for n in free[:count]]
        if not units:
            return
        deadline = time.monotonic() + PENDING_TIMEOUT
        for unit in units:
            pool.pending[unit] = deadline
        self._update(pool)
        if self.verbose:
            _log(f"{pool.prefix}: {why}; {len(pool.workers)} running, starting {' '.join(units)}")
        self._start(units)

    def _start(self, units: list[str], verb: str | None = "start") -> None:
        # posix_spawn, not subprocess: that module would stay in the holder's memory after the first start.
        args = ["start", "--no-block", *units] if verb else units
        try:
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            try:
                import signal

                pid = os.posix_spawn(self.systemctl, [self.systemctl, *args], os.environ,
                                     file_actions=[(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1)],
                                     setsigdef=(signal.SIGPIPE,))  # Python ignores it; subprocess restored it too
            finally:
                os.close(null)
        except OSError as exc:
            _log(f"cannot run {self.systemctl}: {exc}")
            return
        self.children.append(pid)

    def _tick(self) -> None:
        import time

        self.children = [pid for pid in self.children if not _reaped(pid)]
        now = time.monotonic()
        silent = [fd for fd, (_conn, deadline) in self.controls.items() if deadline < now]
        for fd in silent:
            self._close_control(fd)
        if silent:
            _log(f"holder: closed {len(silent)} control connection(s) that sent no request within {CONTROL_TIMEOUT:.0f}s")
        for pool in self.pools.values():
            expired = [u for u, t in pool.pending.items() if t < now]
            for unit in expired:
                if unit not in pool.pending:
                    continue
                del pool.pending[unit]
                self._drop_grant(pool, unit.partition("#")[0])  # a grant lapses whole
                _log(f"{unit} did not start within {PENDING_TIMEOUT:.0f}s")
            if expired:
                self._update(pool)

    # -- control
    def retire(self, pid: int, *, unit: str | None = None) -> str:
        found = 0
        for pool, worker in list(self.peers.values()):
            if worker.pid == pid and unit in (None, worker.unit):
                self._forget(pool, worker)
                self._update(pool)
                found += 1
        return "OK" if found else f"ERR no daemon with pid {pid}"

    def reload(self, *, refresh: bool = False) -> None:
        """Close every status peer: daemons finish their work and exit, new ones read the new config.

        With ``refresh`` (postfix reload, systemctl reload) the units are regenerated first
        and new entries started, as master(8) adds services on reload.
        """
        if refresh:
            _log("reload: re-reading master.cf (systemctl daemon-reload)")
            try:
                _in_child(self._refresh)
            except BridgeError as exc:
                _log(f"reload: {exc}")
        self._mark_reload()
        for pool, worker in list(self.peers.values()):
            self._forget(pool, worker)
        for pool in self.pools.values():
            self._update(pool)
            for sock in pool.listen:
                self.reaper.close(sock)
            pool.listen = []
            for unit, channel in list(pool.supervisors.items()):
                self._drop_supervisor(pool, unit, channel)  # its daemons finish; new units run the new config
            pool.supervisors.clear()
            pool.pending.clear()
        self.grants.clear()

    def _mark_reload(self) -> None:
        """Tell the crash gate (ExecStartPre) that the restarts of the next seconds follow a reload, not
        a crash: qmgr (Restart=always) comes back after every one, and systemd does not say how it ended."""
        import time

        where = os.path.join(os.path.dirname(self.flow), "throttle")
        try:
            os.makedirs(where, mode=0o755, exist_ok=True)
            fd = os.open(os.path.join(where, ".reload"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            try:
                os.write(fd, b"%d\n" % int(time.time()))
            finally:
                os.close(fd)
        except OSError as exc:
            _log(f"holder: cannot mark the reload for the crash gate: {exc}")

    def _refresh(self) -> bytes:
        """daemon-reload, start what is new, stop what master.cf lost (in a child: see _in_child)."""
        import subprocess

        self._systemctl(subprocess, "daemon-reload")
        if self.target:
            self._systemctl(subprocess, "start", "--no-block", self.target)
            # master_refresh() stops the services a reload removed: here, the units whose files
            # the regenerated set no longer has (not-found; the instance's prefix, so no other's).
            removed = self._removed_units(subprocess)
            if removed:
                _log(f"reload: stopping units no longer in master.cf: {' '.join(removed)}")
                self._systemctl(subprocess, "stop", "--no-block", "--", *removed)
                self._systemctl(subprocess, "reset-failed", "--", *removed)
        return b""

    def _systemctl(self, subprocess: ModuleType, *args: str) -> str:
        try:
            done = subprocess.run([self.systemctl, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  timeout=120, check=False)
            return done.stdout.decode(errors="replace")
        except (OSError, subprocess.TimeoutExpired) as exc:
            _log(f"systemctl {' '.join(args)}: {exc}")
            return ""

    def _removed_units(self, subprocess: ModuleType) -> list[str]:
        prefix = self.target[:-len(".target")] if self.target.endswith(".target") else ""
        if not prefix:
            return []
        rows = self._systemctl(subprocess, "list-units", "--all", "--plain", "--no-legend", "--full", "--",
                               f"{prefix}-*")
        out = []
        for row in rows.splitlines():
            fields = row.split()
            # unit load active sub: a loaded unit whose file is gone after daemon-reload is "not-found".
            if len(fields) >= 3 and fields[1] == "not-found" and own_unit(prefix, fields[0]):
                out.append(fields[0])
        return out

    def status(self) -> dict[str, object]:
        return {prefix: {"maxproc": p.maxproc, "workers": sorted(w.unit for w in p.workers.values()),
                         "available": p.avail(), "pending": sorted(p.pending), "watching": p.watching,
                         "waiting": self._waiting(p) if p.listen else None}  # null: the kernel does not say
                for prefix, p in sorted(self.pools.items())}


UNIT_SLUGS = ("inet", "unix", "dgram", "fifo", "pass")


def own_unit(prefix: str, unit: str) -> bool:
    """Whether ``unit`` is one the generator makes for the instance with this prefix.

    Exact, not a glob: instance_unit's units share the prefix (-master.service, -jail.*), and the
    prefixes of other instances are escaped (postfix-out\\x2d2), so they never match.
    """
    stem, dot, suffix = unit.rpartition(".")
    if not dot:
        return False
    if stem == prefix:
        return suffix in ("target", "slice")
    if not stem.startswith(prefix + "-"):
        return False
    rest = stem[len(prefix) + 1:].partition("@")[0]
    if rest == "holder":
        return suffix in ("socket", "service")
    if rest == "config-error":  # the generator's stand-in when master.cf cannot be mapped
        return suffix == "service"
    if rest.endswith("-wakeup"):
        rest = rest[:-len("-wakeup")]
    service, dash, slug = rest.rpartition("-")
    return bool(service and dash) and slug in UNIT_SLUGS and suffix in ("socket", "service", "timer")


def cmd_holder(argv: list[str]) -> int:
    import socket

    # --units-set and --proc are for tests: the defaults are the generator's copies and the kernel's /proc.
    names = ("flow", "stamps", "queue-directory", "data-directory", "owner", "group", "listen", "systemctl", "target",
             "verbose", "units-set", "proc")
    opts, _unused = _options(argv, names)
    fds = listen_fds(dict(os.environ), os.getpid())
    if fds:
        listener = socket.socket(fileno=fds[0])
        os.set_inheritable(fds[0], False)  # systemd passes it inheritable: not for the systemctl it spawns
    elif "listen" in opts:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            os.unlink(opts["listen"])
        except FileNotFoundError:
            pass
        listener.bind(opts["listen"])
        listener.listen(64)
    else:
        raise BridgeError("holder: no socket from systemd and no --listen PATH")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    import resource

    # One descriptor per worker and listener copy: systemd's soft limit (1024) is below a large instance's.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))
    except (ValueError, OSError):
        _log(f"holder: keeps {soft} descriptors at most")
    holder = Holder(listener=listener, flow=opts["flow"], stamps=opts["stamps"],
                    queue_directory=opts["queue-directory"], owner=opts.get("owner", "postfix"),
                    group=opts.get("group", "postfix"), systemctl=opts.get("systemctl", "/bin/systemctl"),
                    target=opts.get("target", ""), data_directory=opts.get("data-directory", ""),
                    units_set=(opts["units-set"],) if "units-set" in opts else (), proc=opts.get("proc", "/proc"))
    holder.verbose = opts.get("verbose", "no") == "yes"
    holder.prepare()
    holder.serve()
    return 0


# --------------------------------------------------------------------------- clients


def request(holder: str, message: dict[str, object], timeout: float = 10.0) -> str:
    import socket

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn.settimeout(timeout)
    try:
        _connect(conn, holder, timeout)
        conn.send(encode(message))
        return conn.recv(1 << 20).decode(errors="replace")
    finally:
        conn.close()


def cmd_retire(argv: list[str]) -> int:
    opts, _unused = _options(argv, ("holder", "pid", "timeout"))
    pid = int(opts["pid"])
    timeout = float(opts.get("timeout", "80"))
    import select

    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return 0
    try:
        reply = request(opts["holder"], {"command": "retire", "pid": pid})
    except OSError as exc:
        raise BridgeError(f"status holder: {exc}") from exc
    if reply != "OK":
        raise BridgeError(reply)
    # The daemon sees EOF on fd 5 and exits after its current request.
    ready, _writable, _errored = select.select([pidfd], [], [], timeout)
    os.close(pidfd)
    return 0 if ready else 1


def cmd_status(argv: list[str]) -> int:
    opts, _unused = _options(argv, ("holder",))
    sys.stdout.write(f"{request(opts['holder'], {'command': 'status'})}\n")
    return 0


def cmd_kick(argv: list[str]) -> int:
    """inet_trigger(): connect, send the request, wait up to 1s for the server to close."""
    import errno
    import socket

    opts, _unused = _options(argv, ("inet", "request"))
    host, _rest_text, port = opts["inet"].rpartition(":")
    host = host.strip("[]")
    with socket.create_connection((host, int(port)), timeout=1.0) as conn:
        conn.sendall(opts.get("request", "W").encode())
        conn.shutdown(socket.SHUT_WR)
        try:
            while conn.recv(1024):
                pass
        except OSError as exc:
            if exc.errno not in (errno.ECONNRESET, errno.EAGAIN) and not isinstance(exc, socket.timeout):
                raise
    return 0


def _manager_umask() -> int:
    """systemd's own umask (PID 1's), which its check of an existing FIFO takes into account."""
    try:
        with open("/proc/1/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cmd_endpoint(argv: list[str]) -> int:
    """ExecStartPre of a local listener: make room at its name, as master(8) does before it binds.

    fifo_listen(), unix_listen() and unix_dgram_listen() remove whatever is at the name, then create
    the endpoint. The name is in a directory mail_owner controls: the directory is opened without
    following a symlink, only the one entry is removed (unlink never follows a symlink; a directory
    fails, as it does for master). systemd reuses an existing FIFO only when root owns it with the
    mode systemd itself would give it, and creates one with the directory's group where that is
    set-gid (Debian's public/): so a FIFO is made here, root:root, through its own descriptor.
    A FIFO replaced in between fails systemd's check.

    With --owner and --group (ExecStartPost, once systemd has created the endpoint) it gives the
    endpoint to mail_owner as master(8)'s endpoints are: through a descriptor of the very inode,
    never by path. systemd's own SocketUser=/SocketGroup= chown(2) the path and so follow a symlink
    mail_owner put there in between (/etc/shadow would become mail_owner's).
    """
    opts, rest = _options(argv, ("fifo-mode", "owner", "group"))
    directory, name = os.path.split(rest[0]) if len(rest) == 1 else ("", "")
    if not directory.startswith("/") or name in ("", ".", ".."):
        raise BridgeError("usage: bridge endpoint [--fifo-mode MODE | --owner USER --group GROUP] -- /absolute/path")
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if "owner" in opts or "group" in opts:
            _give_endpoint(dfd, name, rest[0], opts.get("owner", ""), opts.get("group", ""))
            return 0
        try:
            os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            pass
        if "fifo-mode" in opts:
            mode = int(opts["fifo-mode"], 8) & 0o777 & ~_manager_umask()
            os.mkfifo(name, 0o600, dir_fd=dfd)
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                    raise BridgeError(f"endpoint: {rest[0]} was replaced while it was made")
                os.fchown(fd, 0, 0)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
    finally:
        os.close(dfd)
    return 0


def _give_endpoint(dfd: int, name: str, path: str, owner: str, group: str) -> None:
    import grp
    import pwd

    uid, gid = pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        st = os.fstat(fd)
        # Only what systemd just made: a socket or FIFO with one link (a hard link could be anything).
        if not (stat.S_ISSOCK(st.st_mode) or stat.S_ISFIFO(st.st_mode)) or st.st_nlink != 1:
            raise BridgeError(f"endpoint: {path} is not the socket or FIFO systemd made; left alone")
        os.chown(f"/proc/self/fd/{fd}", uid, gid)  # this inode, whatever is at the name by now
    finally:
        os.close(fd)


COMMANDS = {"run": cmd_run, "holder": cmd_holder, "retire": cmd_retire, "status": cmd_status, "kick": cmd_kick,
            "endpoint": cmd_endpoint}


# Installed as /usr/libexec/mailfleet-postfix/bridge. A script is compiled at every run, a module is
# loaded from its bytecode: run as a script this file cost 22 ms per worker start instead of 10, and
# the compiler's memory stayed in the holder for good (+4.7 MiB).
LAUNCHER = """# Installed by mailfleet.postfix (systemd_units): run as {python} -I -S THIS (see _masterless_bridge.py).
import sys
sys.path.insert(0, {libexec!r})
from mailfleet_postfix._masterless_bridge import main
sys.exit(main(sys.argv[1:]))
"""


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        _log("usage: bridge {" + "|".join(COMMANDS) + "} ...")
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except BridgeError as exc:
        _log(str(exc))
        return 1
    except OSError as exc:
        _log(f"{argv[0]}: {exc}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
