"""The fd bridge and status holder, with real file descriptors and processes (no systemd needed).

systemd socket activation is emulated: a tiny launcher puts the listening sockets on
fds 3.. and sets LISTEN_PID/LISTEN_FDS before exec'ing the bridge, which execs a fake
daemon that reports what it got on fds 3-7, its cwd and umask, and then behaves like
a Postfix server skeleton on the status channel.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _masterless_bridge, _masterless_generator, _masterless_units

BRIDGE = Path(_masterless_bridge.__file__)
PYTHON = sys.executable

FAKE_DAEMON = r'''
import fcntl, json, os, select, socket, stat, struct, sys, time
report = {"argv": sys.argv, "pid": os.getpid(), "cwd": os.getcwd()}
mask = os.umask(0); os.umask(mask); report["umask"] = mask
report["env"] = {k: v for k, v in os.environ.items() if k.startswith("LISTEN_")}
fds = {}
for fd in range(3, 12):
    try:
        st = os.fstat(fd)
    except OSError:
        continue
    info = {"fifo": stat.S_ISFIFO(st.st_mode), "sock": stat.S_ISSOCK(st.st_mode), "ino": st.st_ino,
            "nonblock": bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK),
            "cloexec": bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)}
    if info["sock"]:
        s = socket.socket(fileno=os.dup(fd))
        info["type"] = int(s.type)
        info["listening"] = s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        info["name"] = str(s.getsockname())
        s.close()
    fds[str(fd)] = info
report["fds"] = fds
mode = os.environ.get("FAKE_MODE", "report")
if mode == "tokens-put":
    os.write(4, b"x" * 7)
if mode == "tokens-get":
    try:
        report["tokens"] = len(os.read(3, 100))
    except BlockingIOError:
        report["tokens"] = 0
with open(os.environ["FAKE_REPORT"], "w") as f:
    json.dump(report, f)
if mode in ("daemon", "busy"):
    records = int(os.environ.get("FAKE_RECORDS", "1"))
    for n in range(records):
        os.write(5, struct.pack("=iIi", os.getpid(), 0, 0))
        if mode == "daemon":
            os.write(5, struct.pack("=iIi", os.getpid(), 0, 1))
    open(os.environ["FAKE_REPORT"] + ".ready", "w").close()
    open(os.environ["FAKE_REPORT"] + ".%d.ready" % os.getpid(), "w").close()  # one per daemon a bridge forked
    select.select([5], [], [])  # *_server_abort(): any readability of fd 5 means master is gone
    open(os.environ["FAKE_REPORT"] + ".eof", "w").close()
'''

LAUNCHER = (
    "import os, sys\n"
    "n = int(sys.argv[1]); src = [int(x) for x in sys.argv[2:2 + n]]\n"
    "for i, fd in enumerate(src): os.dup2(fd, 100 + i)\n"
    "for i in range(n): os.dup2(100 + i, 3 + i); os.close(100 + i)\n"
    "os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDS'] = str(n)\n"
    # The cgroup systemd would have put this process in, in the holder's fake /proc (--proc).
    "cg = os.environ.pop('FAKE_CGROUP', '')\n"
    "if cg:\n"
    "    os.makedirs(os.path.join(os.environ['FAKE_PROC'], str(os.getpid())), exist_ok=True)\n"
    "    open(os.path.join(os.environ['FAKE_PROC'], str(os.getpid()), 'cgroup'), 'w').write('0::' + cg + '\\n')\n"
    "os.execv(sys.argv[2 + n], sys.argv[2 + n:])\n"
)


def me() -> tuple[str, str]:
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


def wait_for(path: Path, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            return True
        time.sleep(0.02)
    return False


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.queue = tmp / "queue"
        (self.queue / "pid").mkdir(parents=True)
        self.run = tmp / "run"
        self.run.mkdir()
        self.data = tmp / "data"
        self.data.mkdir()
        self.sock = self.run / "holder.sock"
        self.flow = self.run / "flow"
        self.stamps = self.run / "used"
        self.systemctl_log = tmp / "systemctl.log"
        self.systemctl = tmp / "systemctl"
        self.systemctl.write_text(f"#!/bin/sh\necho \"$*\" >> {self.systemctl_log}\n")
        self.systemctl.chmod(0o755)
        self.fake = tmp / "fake_daemon.py"
        self.fake.write_text(FAKE_DAEMON)
        self.launcher = tmp / "launcher.py"
        self.launcher.write_text(LAUNCHER)
        self.holder: subprocess.Popen[bytes] | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        # What systemd and the generator would provide: the cgroup of each process, and the unit set.
        self.proc = tmp / "proc"
        (self.proc / "self").mkdir(parents=True)
        (self.proc / "self" / "cgroup").write_text("0::/t.slice/t-holder.service\n")
        self.units_set = self.run / "units.set"
        self.units: dict[str, str] = {}

    def start_holder(self) -> None:
        owner, group = me()
        self.log = self.tmp / "holder.log"
        with open(self.log, "ab") as log:
            self.holder = subprocess.Popen(
                [PYTHON, "-I", "-S", str(BRIDGE), "holder", "--listen", str(self.sock), "--flow", str(self.flow),
                 "--stamps", str(self.stamps), "--queue-directory", str(self.queue), "--owner", owner,
                 "--group", group, "--systemctl", str(self.systemctl), "--target", "t.target",
                 "--data-directory", str(self.data), "--units-set", str(self.units_set), "--proc", str(self.proc)],
                stderr=log)
        assert wait_for(self.sock)
        time.sleep(0.1)

    def bridge(self, listeners: list[socket.socket], *, unit: str = "t-x-unix.service", maxproc: str = "1",
               mode: str = "report", extra: list[str] | None = None, report: str = "report.json",
               env: dict[str, str] | None = None, cgroup: str | None = None,
               claim: list[str] | None = None, listed: bool = True) -> tuple[subprocess.Popen[bytes], Path]:
        """A worker of ``unit`` (its cgroup: ``cgroup``), whose bridge options the unit set has too;
        ``claim`` adds options only the request carries (what a forged registration says)."""
        out = self.tmp / report
        fds = [s.fileno() for s in listeners]
        options = ["--holder", str(self.sock), "--flow", str(self.flow), "--maxproc", maxproc, *(extra or [])]
        if listed:
            self.add_unit(unit, options)
        cmd = [PYTHON, str(self.launcher), str(len(fds)), *map(str, fds),
               PYTHON, "-I", "-S", str(BRIDGE), "run", *options, *(claim or []), "--unit", unit,
               "--", PYTHON, "fakedaemon", str(self.fake), "-t", "unix"]
        environ = {"PATH": "/usr/bin:/bin", "FAKE_REPORT": str(out), "FAKE_MODE": mode, "FAKE_PROC": str(self.proc),
                   "FAKE_CGROUP": f"/t.slice/{unit}" if cgroup is None else cgroup, **(env or {})}
        proc = subprocess.Popen(cmd, pass_fds=fds, cwd=self.queue, env=environ, stderr=subprocess.PIPE,
                                preexec_fn=lambda: os.umask(0o022))
        self.procs.append(proc)
        return proc, out

    def add_unit(self, unit: str, options: list[str], daemon: str = "x") -> None:
        """The unit's file in the unit set, with a `bridge run` ExecStart= as the generator writes it."""
        stem, at, _number = unit.partition("@")
        words = [PYTHON, "-I", "-S", str(BRIDGE), "run", *options, "--unit", "%n", "--", f"/usr/lib/postfix/sbin/{daemon}",
                 daemon]
        self.units[f"{stem}@.service" if at else unit] = (
            "[Service]\nExecStart=" + " ".join(_masterless_units.exec_quote(w) for w in words) + "\n")
        _masterless_generator.save_set(str(self.units_set), {**self.units, "t.target": "[Unit]\n"})

    def status(self) -> dict[str, dict[str, object]]:
        return json.loads(_masterless_bridge.request(str(self.sock), {"command": "status"}))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr:
                proc.stderr.close()
        if self.holder and self.holder.poll() is None:
            self.holder.send_signal(signal.SIGUSR1)  # what systemd sends (KillSignal=SIGUSR1)
            self.holder.wait(timeout=10)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    e.start_holder()
    yield e
    e.close()


def unix_listener(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(10)
    return sock


def run_report(env: Env, listeners: list[socket.socket], **kw: object) -> dict[str, Any]:
    proc, out = env.bridge(listeners, **kw)  # type: ignore[arg-type]
    assert proc.wait(timeout=20) == 0, proc.stderr.read().decode() if proc.stderr else ""
    report = json.loads(out.read_text())
    report["launcher_pid"] = proc.pid
    return report


# --------------------------------------------------------------------------- the fd contract


def test_fd_contract(env: Env) -> None:
    a, b = unix_listener(env.tmp / "a.sock"), unix_listener(env.tmp / "b.sock")
    report = run_report(env, [a, b])
    fds = report["fds"]
    assert isinstance(fds, dict)
    flow_ino = os.stat(env.flow).st_ino
    for fd in ("3", "4"):
        assert fds[fd]["fifo"] and fds[fd]["ino"] == flow_ino and fds[fd]["nonblock"]
    assert fds["5"]["sock"] and fds["5"]["type"] == socket.SOCK_STREAM and not fds["5"]["listening"]
    assert fds["6"]["listening"] and fds["6"]["name"].endswith("a.sock") and fds["6"]["nonblock"]
    assert fds["7"]["listening"] and fds["7"]["name"].endswith("b.sock")
    assert not any(info["cloexec"] for info in fds.values())
    assert set(fds) == {"3", "4", "5", "6", "7"}  # nothing else leaks into the daemon


def test_environment_cwd_umask_and_exec_in_place(env: Env) -> None:
    report = run_report(env, [unix_listener(env.tmp / "a.sock")])
    assert report["cwd"] == str(env.queue)
    assert report["umask"] == 0o077
    assert report["env"] == {}
    # launcher -> bridge -> daemon all exec'd in one process: no interpreter stays behind.
    assert report["pid"] == report["launcher_pid"]
    assert report["argv"][0] == str(env.fake) or report["argv"][1:] == ["-t", "unix"]


def test_run_imports_only_cheap_modules(env: Env) -> None:
    # `run` is paid at every worker start: the socket module (selectors, enum, collections) doubled
    # the interpreter's start-up time. -X importtime lists every module run imported before exec.
    listener = unix_listener(env.tmp / "a.sock")
    fd = listener.fileno()
    env.add_unit("t-x-unix.service", ["--holder", str(env.sock), "--flow", str(env.flow)])
    cmd = [PYTHON, str(env.launcher), "1", str(fd), PYTHON, "-I", "-S", "-X", "importtime", str(BRIDGE), "run",
           "--holder", str(env.sock), "--flow", str(env.flow), "--unit", "t-x-unix.service", "--",
           PYTHON, "fakedaemon", str(env.fake)]
    proc = subprocess.run(cmd, pass_fds=[fd], cwd=env.queue, capture_output=True, text=True, check=False, timeout=20,
                          env={"PATH": "/usr/bin:/bin", "FAKE_REPORT": str(env.tmp / "r.json"), "FAKE_MODE": "report",
                               "FAKE_PROC": str(env.proc), "FAKE_CGROUP": "/t.slice/t-x-unix.service"})
    assert proc.returncode == 0, proc.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "_socket" in imported
    assert not imported & {"socket", "selectors", "enum", "collections", "typing", "subprocess", "json"}


def test_no_listen_fds_is_an_error(env: Env) -> None:
    proc = subprocess.run([PYTHON, "-I", "-S", str(BRIDGE), "run", "--holder", str(env.sock), "--flow",
                           str(env.flow), "--unit", "t-x-unix.service", "--", "/bin/true", "true"],
                          capture_output=True, text=True, env={"LISTEN_FDS": "1", "LISTEN_PID": "1"}, check=False)
    assert proc.returncode == 1
    assert "no listening socket from systemd" in proc.stderr


def test_no_holder_fails_fast(tmp_path: Path) -> None:
    e = Env(tmp_path)
    proc, _unused = e.bridge([unix_listener(tmp_path / "a.sock")])
    try:
        assert proc.wait(timeout=20) == 1
        assert proc.stderr and b"status holder" in proc.stderr.read()
    finally:
        e.close()


# --------------------------------------------------------------------------- the status channel


def test_holder_drains_status_records(env: Env) -> None:
    # 30000 records (360 kB) exceed any socket buffer: they only get through if drained.
    proc, out = env.bridge([unix_listener(env.tmp / "a.sock")], mode="daemon", unit="t-d-unix@1.service", maxproc="5",
                           env={"FAKE_RECORDS": "15000"})
    assert wait_for(Path(str(out) + ".ready"), 30)
    status = env.status()
    assert status["t-d-unix"]["workers"] == ["t-d-unix@1.service"]
    assert status["t-d-unix"]["available"] == 1
    assert proc.poll() is None  # alive: its status peer stays open


def test_reload_closes_status_channels(env: Env) -> None:
    procs = []
    for n in (1, 2):
        proc, out = env.bridge([unix_listener(env.tmp / f"{n}.sock")], mode="daemon", unit=f"t-r{n}-unix.service",
                               report=f"r{n}.json")
        assert wait_for(Path(str(out) + ".ready"))
        procs.append((proc, out))
    assert env.holder is not None
    env.holder.send_signal(signal.SIGHUP)
    for proc, out in procs:
        assert proc.wait(timeout=10) == 0
        assert Path(str(out) + ".eof").exists()
    assert env.status()["t-r1-unix"]["workers"] == []
    # postfix reload re-reads master.cf first: units regenerated, new entries started.
    assert systemctl_calls(env)[:2] == ["daemon-reload", "start --no-block t.target"]


def test_reload_stops_the_units_master_cf_no_longer_has(tmp_path: Path) -> None:
    """master_refresh() stops removed services: units left not-found by daemon-reload are stopped,
    only those of this instance (t-*; another instance's prefix is escaped, t\\x2d2-*)."""
    env = Env(tmp_path)
    env.systemctl.write_text(
        f"#!/bin/sh\necho \"$*\" >> {env.systemctl_log}\n"
        "case \"$1\" in list-units) printf '%s\\n' "
        "'t-pickup-unix.socket not-found active listening Postfix' "
        "'t-pickup-fifo.socket loaded active listening Postfix' "
        "'t-qmgr-fifo.service loaded active running Postfix' ;; esac\n")
    env.start_holder()
    try:
        assert env.holder is not None
        env.holder.send_signal(signal.SIGHUP)
        calls = wait_calls(env, 5)
        assert calls[:3] == ["daemon-reload", "start --no-block t.target",
                             "list-units --all --plain --no-legend --full -- t-*"]
        assert calls[3:5] == ["stop --no-block -- t-pickup-unix.socket", "reset-failed -- t-pickup-unix.socket"]
    finally:
        env.close()


HOLDER_MEMORY = """
import importlib.util, json, socket, sys
spec = importlib.util.spec_from_file_location("bridge", sys.argv[1])
bridge = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bridge)
flow, stamps, queue, owner, group, systemctl, units_set = sys.argv[2:9]
before = set(sys.modules)
holder = bridge.Holder(listener=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET), flow=flow, stamps=stamps,
                       queue_directory=queue, owner=owner, group=group, systemctl=systemctl, target="t.target",
                       units_set=(units_set,))
specs = holder._pool_specs()
holder._start(["t-x-unix@2.service"])
holder.reload(refresh=True)
print(json.dumps({"specs": specs, "imported": sorted(set(sys.modules) - before)}))
"""


def test_holder_keeps_the_library_and_subprocess_out_of_its_memory(env: Env) -> None:
    """The holder lives as long as the instance: the unit set is read, and reload's systemctl calls are
    made, in a forked child, and growth spawns systemctl without the subprocess module."""
    env.add_unit("t-x-unix@.service", ["--holder", str(env.sock), "--flow", str(env.flow), "--maxproc", "3"])
    owner, group = me()
    proc = subprocess.run([PYTHON, "-I", "-S", "-c", HOLDER_MEMORY, str(BRIDGE), str(env.tmp / "flow2"),
                           str(env.tmp / "used2"), str(env.queue), owner, group, str(env.systemctl), str(env.units_set)],
                          capture_output=True, text=True, check=True, timeout=30)
    out = json.loads(proc.stdout)
    assert out["specs"]["t-x-unix@.service"]["maxproc"] == "3"
    assert not [m for m in out["imported"] if m in ("subprocess", "json") or m.rsplit(".", 1)[-1].startswith(
        ("_masterless_generator", "_masterless_units", "_systemd_sandbox", "_postfix_mastercf", "_postfix_semantics", "_host"))], out["imported"]
    assert wait_calls(env, 4)[:2] == ["start --no-block t-x-unix@2.service", "daemon-reload"]


def _failing_work() -> bytes:
    raise OSError("no such set")


def test_in_child_reports_the_childs_error() -> None:
    assert _masterless_bridge._in_child(lambda: b"x" * 200000) == b"x" * 200000  # more than a pipe holds
    with pytest.raises(_masterless_bridge.BridgeError, match="no such set"):
        _masterless_bridge._in_child(_failing_work)


def test_an_idle_closer_is_ended_and_comes_back_when_needed() -> None:
    reaper = _masterless_bridge.Reaper()
    reaper.IDLE = 0.05
    first, second = socket.socketpair()
    reaper.close(first)
    assert reaper.flush()
    pid = reaper.pid
    time.sleep(0.1)
    reaper.check()
    assert reaper.pid == 0 and reaper.sock is None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped, not left a zombie
    reaper.close(second)
    assert reaper.pid and reaper.flush()
    reaper.stop()


def test_master_locks_make_postfix_see_a_running_system(env: Env) -> None:
    import fcntl

    pid_file = env.queue / "pid" / "master.pid"
    assert env.holder is not None
    assert pid_file.read_text() == f"{env.holder.pid:>{struct.calcsize('L') * 4}}\n"
    for path in (pid_file, env.data / "master.lock"):
        fd = os.open(path, os.O_RDWR)
        with pytest.raises(BlockingIOError):  # what master -t tries
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)


@pytest.mark.skipif(os.getuid() != 0, reason="chown needs root")
def test_data_lock_belongs_to_the_mail_owner(tmp_path: Path) -> None:
    # A root-owned master.lock would make a later master(8), which opens it as mail_owner, fail.
    lock = tmp_path / "master.lock"
    lock.touch()
    fds = _masterless_bridge.Holder._master_lock(str(tmp_path), "master.lock", mode=0o600, owner=(65534, 65534))
    try:
        assert (lock.stat().st_uid, lock.stat().st_gid) == (65534, 65534)
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    finally:
        for fd in fds:
            os.close(fd)


def _victim(tmp_path: Path) -> tuple[Path, tuple[int, int, int, int]]:
    victim = tmp_path / "shadow"
    victim.write_text("root:secret\n")
    victim.chmod(0o640)
    st = victim.stat()
    return victim, (st.st_uid, st.st_gid, st.st_mode, st.st_size)


@pytest.mark.parametrize("plant", ["symlink", "hard link", "fifo"])
def test_data_lock_never_follows_what_mail_owner_put_there(tmp_path: Path, plant: str) -> None:
    """data_directory is mail_owner's: what is at master.lock is replaced by a file the holder creates,
    never opened for writing, chowned or truncated (issue 14, item 3)."""
    data = tmp_path / "data"
    data.mkdir()
    victim, before = _victim(tmp_path)
    lock = data / "master.lock"
    if plant == "symlink":
        lock.symlink_to(victim)
    elif plant == "hard link":
        os.link(victim, lock)
    else:
        os.mkfifo(lock)
    owner = (65534, 65534) if os.getuid() == 0 else (os.getuid(), os.getgid())
    fds = _masterless_bridge.Holder._master_lock(str(data), "master.lock", mode=0o600, owner=owner)
    try:
        st = victim.stat()
        assert (st.st_uid, st.st_gid, st.st_mode, st.st_size) == before
        assert victim.read_text() == "root:secret\n"
        st = lock.lstat()
        assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and (st.st_uid, st.st_gid) == owner
        assert lock.read_text().strip() == str(os.getpid())
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.skipif(os.getuid() != 0, reason="a file of another owner needs root")
def test_master_pid_is_created_fresh(tmp_path: Path) -> None:
    """A master.pid someone else owns (what the old holder gave away) is replaced, not rewritten: its
    owner could have made it point anywhere, and postfix stop kills the pid it names."""
    pid_file = tmp_path / "master.pid"
    pid_file.write_text("1\n")
    os.chown(pid_file, 65534, 65534)
    old = os.open(pid_file, os.O_RDONLY)
    fds = _masterless_bridge.Holder._master_lock(str(tmp_path), "master.pid", mode=0o644)
    try:
        st = pid_file.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644)
        assert pid_file.read_text().strip() == str(os.getpid())
        assert os.pread(old, 10, 0) == b"1\n"  # the old inode is left alone
    finally:
        os.close(old)
        for fd in fds:
            os.close(fd)


def test_master_lock_held_by_master_refuses(tmp_path: Path) -> None:
    import fcntl

    lock = tmp_path / "master.lock"
    lock.write_text("")
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running master(8) holds
    try:
        with pytest.raises(_masterless_bridge.BridgeError, match="master\\(8\\) runs"):
            _masterless_bridge.Holder._master_lock(str(tmp_path), "master.lock", mode=0o600)
        assert os.path.samestat(os.fstat(fd), lock.stat())  # left in place
    finally:
        os.close(fd)


def test_second_holder_refuses_while_locks_are_held(env: Env) -> None:
    owner, group = me()
    proc = subprocess.run(
        [PYTHON, "-I", "-S", str(BRIDGE), "holder", "--listen", str(env.tmp / "h2.sock"), "--flow", str(env.flow),
         "--stamps", str(env.stamps), "--queue-directory", str(env.queue), "--owner", owner, "--group", group],
        capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 1
    assert "master(8) runs for this instance" in proc.stderr


def test_postfix_stop_stops_the_target(env: Env) -> None:
    assert env.holder is not None
    env.holder.terminate()  # postfix-script stop: kill `sed 1q pid/master.pid`
    assert wait_calls(env, 1)[-1] == "stop --no-block t.target"
    assert env.holder.poll() is None  # systemd stops it (SIGUSR1) as part of the target


def test_holder_exit_retires_daemons(env: Env) -> None:
    proc, out = env.bridge([unix_listener(env.tmp / "a.sock")], mode="daemon")
    assert wait_for(Path(str(out) + ".ready"))
    assert env.holder is not None
    env.holder.send_signal(signal.SIGUSR1)
    assert proc.wait(timeout=10) == 0


@pytest.mark.skipif(os.getuid() != 0, reason="retire is a root-only request")
def test_retire_one_daemon(env: Env) -> None:
    keep, keep_out = env.bridge([unix_listener(env.tmp / "k.sock")], mode="daemon", unit="t-keep-unix.service",
                                report="k.json")
    proc, out = env.bridge([unix_listener(env.tmp / "a.sock")], mode="daemon", unit="t-verify-unix.service")
    assert wait_for(Path(str(out) + ".ready")) and wait_for(Path(str(keep_out) + ".ready"))
    done = subprocess.run([PYTHON, "-I", "-S", str(BRIDGE), "retire", "--holder", str(env.sock), "--pid",
                           str(proc.pid), "--timeout", "10"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert proc.poll() == 0
    assert keep.poll() is None


# --------------------------------------------------------------------------- pools


def systemctl_calls(env: Env) -> list[str]:
    return env.systemctl_log.read_text().splitlines() if env.systemctl_log.exists() else []


def wait_calls(env: Env, count: int, timeout: float = 5.0) -> list[str]:
    end = time.monotonic() + timeout
    while len(systemctl_calls(env)) < count and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(0.5)  # and nothing more
    return systemctl_calls(env)


def test_pool_grows_per_waiting_client_up_to_maxproc(env: Env) -> None:
    listen = unix_listener(env.tmp / "pool.sock")
    single = ["--max-use", "100"]  # what single-server workers register with
    _unused, out = env.bridge([listen], mode="busy", unit="t-p-unix@1.service", maxproc="4", extra=single)
    assert wait_for(Path(str(out) + ".ready"))
    # The only worker is busy but nobody waits: no second worker (master_avail.c would not fork).
    assert wait_calls(env, 1, timeout=1.0) == []
    clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _unused in range(2)]
    for client in clients:
        client.connect(str(env.tmp / "pool.sock"))  # both wait in the backlog
    # One start per waiting client, in one go.
    assert wait_calls(env, 1) == ["start --no-block t-p-unix@2.service t-p-unix@3.service"]
    assert env.status()["t-p-unix"]["pending"] == ["t-p-unix@2.service", "t-p-unix@3.service"]
    for n in (2, 3):
        _unused, more = env.bridge([listen], mode="busy", unit=f"t-p-unix@{n}.service", maxproc="4", report=f"p{n}.json",
                                   extra=single)
        assert wait_for(Path(str(more) + ".ready"))
    for _extra in range(2):
        clients.append(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        clients[-1].connect(str(env.tmp / "pool.sock"))
    # Two more wait, but maxproc 4 leaves room for one.
    assert wait_calls(env, 2) == ["start --no-block t-p-unix@2.service t-p-unix@3.service", "start --no-block t-p-unix@4.service"]
    for client in clients:
        client.close()


def test_multi_client_pool_grows_by_one(env: Env) -> None:
    listen = unix_listener(env.tmp / "pool.sock")
    _unused, out = env.bridge([listen], mode="busy", unit="t-r-unix@1.service", maxproc="10")  # no --max-use: multi-server
    assert wait_for(Path(str(out) + ".ready"))
    clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _unused in range(3)]
    for client in clients:
        client.connect(str(env.tmp / "pool.sock"))
    # trivial-rewrite queues connections only while inside one request: one more worker, as master forks.
    assert wait_calls(env, 2, timeout=1.5) == ["start --no-block t-r-unix@2.service"]
    for client in clients:
        client.close()


@pytest.mark.parametrize("family", [socket.AF_UNIX, socket.AF_INET])
def test_listen_backlog_counts_waiting_clients(tmp_path: Path, family: int) -> None:
    if family == socket.AF_UNIX:
        listener = unix_listener(tmp_path / "l.sock")
    else:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(10)
    diag = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _masterless_bridge.NETLINK_SOCK_DIAG)
    assert _masterless_bridge.listen_backlog(listener, diag) == 0
    clients = [socket.socket(family, socket.SOCK_STREAM) for _unused in range(3)]
    for client in clients:
        client.connect(listener.getsockname())
    assert _masterless_bridge.listen_backlog(listener, diag) == 3
    listener.accept()[0].close()
    assert _masterless_bridge.listen_backlog(listener, diag) == 2
    for client in clients:
        client.close()
    datagram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    assert _masterless_bridge.listen_backlog(datagram, diag) is None
    assert _masterless_bridge.listen_backlog(unix_listener(tmp_path / "m.sock"), None) is None
    for sock in (listener, diag, datagram):
        sock.close()


class OfflineHolder:
    """A holder whose unit starts are recorded, with a pool of busy workers on a real listener."""

    def __init__(self, tmp_path: Path, prefix: str, maxproc: int, busy: int) -> None:
        owner, group = me()
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.holder = _masterless_bridge.Holder(listener=self.control, flow=str(tmp_path / "flow"),
                                                stamps=str(tmp_path / "used"), queue_directory=str(tmp_path), owner=owner,
                                                group=group, systemctl="/bin/false")
        self.started: list[list[str]] = []
        self.holder._start = lambda units, verb="start": self.started.append(units)  # type: ignore[method-assign]
        self.pool = _masterless_bridge.Pool(prefix, maxproc=maxproc, template=True)
        self.pool.listen = [unix_listener(tmp_path / f"{prefix}.sock")]
        self.pairs = [socket.socketpair() for _unused in range(busy)]
        for n, (a, _unused) in enumerate(self.pairs, start=1):
            worker = _masterless_bridge.Worker(100 + n, f"{prefix}@{n}.service", a)
            worker.avail = False
            self.pool.workers[a.fileno()] = worker

    def close(self) -> None:
        for pair in self.pairs:
            for sock in pair:
                sock.close()
        self.pool.listen[0].close()
        self.control.close()


def test_a_client_taken_within_the_grace_starts_nothing(tmp_path: Path) -> None:
    off = OfflineHolder(tmp_path, "g", maxproc=5, busy=1)
    holder, pool, started = off.holder, off.pool, off.started
    pool.one_client = True
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(tmp_path / "g.sock"))
    holder._demand(pool)
    assert started == [] and pool.waiting_since  # a reconnecting client: wait GROW_GRACE first
    pool.listen[0].accept()[0].close()  # a worker that finished its session took it
    time.sleep(_masterless_bridge.GROW_GRACE)
    holder._recheck(pool)
    assert started == [] and not pool.waiting_since
    late = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    late.connect(str(tmp_path / "g.sock"))
    holder._demand(pool)
    time.sleep(_masterless_bridge.GROW_GRACE)
    holder._recheck(pool)  # still waiting after the grace: a worker starts
    assert started == [["g@2.service"]]
    for sock in (client, late):
        sock.close()
    off.close()


def test_unknown_backlog_doubles_the_pool(tmp_path: Path) -> None:
    off = OfflineHolder(tmp_path, "w", maxproc=6, busy=4)
    off.holder.diag_tried = True  # as if sock_diag were not available (RestrictAddressFamilies, no unix_diag)
    off.holder._demand(off.pool)
    assert off.started == [["w@5.service", "w@6.service"]]  # doubling, capped by maxproc 6
    assert off.pool.room() == 0
    off.close()


def test_worker_at_max_use_gets_a_successor_early(env: Env) -> None:
    listen = unix_listener(env.tmp / "pool.sock")
    proc, out = env.bridge([listen], mode="daemon", unit="t-m-unix@1.service", maxproc="5", extra=["--max-use", "3"],
                           env={"FAKE_RECORDS": "3"})
    assert wait_for(Path(str(out) + ".ready"))
    end = time.monotonic() + 5
    while not systemctl_calls(env) and time.monotonic() < end:
        time.sleep(0.05)
    assert systemctl_calls(env) == ["start --no-block t-m-unix@2.service"]


def test_pool_at_maxproc_does_not_grow(env: Env) -> None:
    listen = unix_listener(env.tmp / "pool.sock")
    proc, out = env.bridge([listen], mode="busy", unit="t-q-unix@1.service", maxproc="1")
    assert wait_for(Path(str(out) + ".ready"))
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(env.tmp / "pool.sock"))
    time.sleep(1.0)
    assert systemctl_calls(env) == []
    client.close()


def test_stamp_and_lock_file(env: Env) -> None:
    stamp = env.stamps / "postfix-default-tlsmgr-unix"
    run_report(env, [unix_listener(env.tmp / "a.sock")],
               extra=["--stamp", str(stamp), "--lock", "pid/inet.smtp"])
    assert stamp.exists()
    lock = env.queue / "pid" / "inet.smtp"
    st = lock.lstat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()


@pytest.mark.parametrize("extra", [["--stamp", "/etc/passwd"], ["--lock", "pid/../../x"], ["--lock", "etc/x"]])
def test_holder_refuses_paths_outside_its_directories(env: Env, extra: list[str]) -> None:
    proc, _unused = env.bridge([unix_listener(env.tmp / "a.sock")], extra=extra)
    assert proc.wait(timeout=20) == 1
    assert proc.stderr and b"refused" in proc.stderr.read()


# --------------------------------------------------------------------------- who may register (issue 14)


def refusal(proc: subprocess.Popen[bytes]) -> str:
    assert proc.wait(timeout=20) == 1
    return proc.stderr.read().decode() if proc.stderr else ""


def refusals(env: Env) -> list[str]:
    return [line for line in env.log.read_text(errors="replace").splitlines() if "refused a request" in line]


@pytest.mark.parametrize(("unit", "cgroup", "listed", "why"), [
    # A process of one unit (a compromised smtpd) registers as another unit of the instance.
    ("t-y-unix@1.service", "/t.slice/t-x-unix.service", True, "registers as"),
    # ... or as a unit of its own choosing, which the holder would then start more of.
    ("evil@1.service", "/t.slice/evil@1.service", True, "not in a unit of t"),
    ("t-x-unix.service", "/t.slice/other-x-unix.service", True, "not in a unit of t"),
    # A look-alike cgroup under a subtree delegated to a user, who may name cgroups freely.
    ("t-x-unix.service", "/user.slice/user-1000.slice/user@1000.service/t.slice/t-x-unix.service", True, "not in a unit"),
    # A unit of the instance's name that the generator did not make (systemd-run --unit t-x-unix).
    ("t-ghost-unix.service", "/t.slice/t-ghost-unix.service", False, "not a pool service"),
])
def test_registration_is_taken_from_the_peers_cgroup(env: Env, unit: str, cgroup: str, listed: bool, why: str) -> None:
    env.add_unit("t-x-unix.service", ["--holder", str(env.sock), "--flow", str(env.flow), "--maxproc", "1"])
    proc, _unused = env.bridge([unix_listener(env.tmp / "a.sock")], unit=unit, cgroup=cgroup, listed=listed,
                               maxproc="0")
    assert why in refusal(proc)
    assert len(refusals(env)) == 1 and why in refusals(env)[0]
    assert env.status() == {}  # no pool, no worker
    assert systemctl_calls(env) == []
    # The holder serves on.
    assert run_report(env, [unix_listener(env.tmp / "b.sock")])["pid"]
    assert env.status()["t-x-unix"]["maxproc"] == 1


def test_pool_options_come_from_the_unit_set_not_the_request(env: Env) -> None:
    pid_file = env.queue / "pid" / "master.pid"
    before = pid_file.read_bytes(), pid_file.stat().st_uid
    _unused, out = env.bridge([unix_listener(env.tmp / "a.sock")], mode="daemon", unit="t-p-unix@1.service", maxproc="2",
                              claim=["--maxproc", "0", "--lock", "pid/inet.evil", "--stamp", str(env.stamps / "evil")])
    assert wait_for(Path(str(out) + ".ready"))
    assert env.status()["t-p-unix"]["maxproc"] == 2
    assert not (env.queue / "pid" / "inet.evil").exists()
    assert not (env.stamps / "evil").exists()
    assert (pid_file.read_bytes(), pid_file.stat().st_uid) == before


def test_lock_file_from_the_unit_set_is_only_given_away_when_made_fresh(env: Env) -> None:
    pid_dir = env.queue / "pid"
    victim, before = _victim(env.tmp)
    os.link(victim, pid_dir / "inet.smtp")  # as if planted (pid/ is root's: only root could)
    run_report(env, [unix_listener(env.tmp / "a.sock")], extra=["--lock", "pid/inet.smtp"])
    st = victim.stat()
    assert (st.st_uid, st.st_gid, st.st_mode, st.st_size) == before
    st = (pid_dir / "inet.smtp").lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_size == 0


@pytest.mark.parametrize("lock", ["pid/master.pid", "pid/nodot", "pid/.hidden"])
def test_lock_names_master_never_hands_out_are_refused(env: Env, lock: str) -> None:
    proc, _unused = env.bridge([unix_listener(env.tmp / "a.sock")], extra=["--lock", lock])
    assert "bad lock file name" in refusal(proc)


def send_request(env: Env, data: bytes, fds: list[int], *, cgroup: str = "/t.slice/t-p-unix@1.service") -> str:
    """A request from this very process, which runs in ``cgroup`` as far as the holder can tell."""
    (env.proc / str(os.getpid())).mkdir(exist_ok=True)
    (env.proc / str(os.getpid()) / "cgroup").write_text(f"0::{cgroup}\n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
        conn.settimeout(10)
        conn.connect(str(env.sock))
        socket.send_fds(conn, [data], fds)
        return conn.recv(4096).decode(errors="replace")


class _RawFd:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        os.close(self.fd)


GARBAGE: list[tuple[str, bytes, list[str]]] = [
    ("empty", b"", []),
    ("not key=value", b"\x00\xff\xfe garbage \x80", []),
    ("not UTF-8 unit", b"unit=t-p-unix@1.service\xff\n", ["pair"]),
    ("no descriptors", b"unit=t-p-unix@1.service\n", []),
    ("status fd is a file", b"unit=t-p-unix@1.service\n", ["file"]),
    ("status fd is a datagram socket", b"unit=t-p-unix@1.service\n", ["dgram"]),
    # The crash of the issue: the listener copy of a template registration is not a socket.
    ("listener is a file", b"unit=t-p-unix@1.service\n", ["pair", "file"]),
    ("listener is a directory", b"unit=t-p-unix@1.service\n", ["pair", "dir"]),
    ("more descriptors than the holder takes", b"unit=t-p-unix@1.service\n", ["pair"] * (_masterless_bridge.MAX_FDS + 6)),
    ("longer than a request", b"unit=t-p-unix@1.service\n" + b"x=" + b"y" * (_masterless_bridge.REQUEST_MAX + 100), ["pair"]),
    ("missing pid", b"command=retire\n", []),
    ("pid not a number", b"command=retire\npid=1e9\n", []),
    ("unknown command", b"command=format-disk\n", []),
    ("descriptors with a command", b"command=status\n", ["pair"]),
]


@pytest.mark.parametrize(("data", "kinds"), [pytest.param(d, k, id=name) for name, d, k in GARBAGE])
def test_garbage_is_refused_and_the_holder_serves_on(env: Env, data: bytes, kinds: list[str]) -> None:
    env.add_unit("t-p-unix@1.service", ["--holder", str(env.sock), "--flow", str(env.flow), "--maxproc", "4"])
    keep: list[Any] = []
    fds: list[int] = []
    for kind in kinds:
        if kind == "pair":
            keep.append(socket.socketpair())
            fds.append(keep[-1][0].fileno())
        elif kind == "dgram":
            keep.append(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
            fds.append(keep[-1].fileno())
        elif kind == "file":
            keep.append(open(os.devnull, "rb"))  # noqa: SIM115 - closed below
            fds.append(keep[-1].fileno())
        elif kind == "dir":
            keep.append(_RawFd(os.open("/", os.O_RDONLY | os.O_DIRECTORY)))
            fds.append(keep[-1].fd)
        else:
            r, w = os.pipe()
            keep.append((os.fdopen(r), os.fdopen(w)))
            fds.append(r)
    try:
        reply = send_request(env, data, fds)
    finally:
        for item in keep:
            for obj in item if isinstance(item, tuple) else (item,):
                obj.close()
    assert reply.startswith("ERR")
    assert env.holder is not None and env.holder.poll() is None
    assert env.status().get("t-p-unix", {"workers": []})["workers"] == []
    # The next registration works: no closed descriptor was left in the holder's selector.
    pair = socket.socketpair()
    listener = unix_listener(env.tmp / "p.sock")
    assert send_request(env, b"unit=t-p-unix@1.service\n", [pair[0].fileno(), listener.fileno()]) == "OK"
    assert env.status()["t-p-unix"]["workers"] == ["t-p-unix@1.service"]
    assert send_request(env, b"unit=t-p-unix@1.service\n", [pair[0].fileno()]) == "OK"  # replaces its first
    assert env.status()["t-p-unix"]["workers"] == ["t-p-unix@1.service"]
    assert env.holder.poll() is None
    assert len(refusals(env)) == 1  # one journal line for the bad request, none for the good ones
    for sock in (*pair, listener):
        sock.close()


def test_silent_control_connections_are_closed(env: Env) -> None:
    idle = [socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _unused in range(3)]
    for conn in idle:
        conn.connect(str(env.sock))
    for conn in idle:
        conn.settimeout(_masterless_bridge.CONTROL_TIMEOUT + 5)
        assert conn.recv(10) == b""  # closed by the holder
        conn.close()
    assert "sent no request" in env.log.read_text()
    assert env.status() == {}


def test_a_fifo_service_registers_its_fifo(env: Env) -> None:
    """A fifo service's listener from systemd (ListenFIFO=) is a FIFO, not a socket."""
    env.add_unit("t-x-unix.service", ["--holder", str(env.sock), "--flow", str(env.flow), "--maxproc", "1"])
    fifo = env.tmp / "pickup"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    pair = socket.socketpair()
    try:
        reply = send_request(env, b"unit=t-pickup-fifo.service\n", [pair[0].fileno(), fd], cgroup="/t.slice/t-pickup-fifo.service")
        assert reply == "ERR refused: t-pickup-fifo.service is not a pool service of this instance's unit set"
        env.add_unit("t-pickup-fifo.service", ["--holder", str(env.sock), "--flow", str(env.flow), "--maxproc", "1"])
        reply = send_request(env, b"unit=t-pickup-fifo.service\n", [pair[0].fileno(), fd], cgroup="/t.slice/t-pickup-fifo.service")
        assert reply == "OK"
        assert env.status()["t-pickup-fifo"]["workers"] == ["t-pickup-fifo.service"]
    finally:
        os.close(fd)
        for sock in pair:
            sock.close()


def test_a_flood_of_silent_connections_does_not_starve_the_holder(env: Env) -> None:
    idle = []
    for _unused in range(_masterless_bridge.MAX_CONTROLS + 20):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for _attempt in range(500):
            try:
                conn.connect(str(env.sock))
                break
            except BlockingIOError:  # the accept queue (64) is full for a moment
                time.sleep(0.01)
        idle.append(conn)
    assert env.status() == {}  # answered at once: the oldest silent ones made room
    assert run_report(env, [unix_listener(env.tmp / "a.sock")])["pid"]
    idle[0].settimeout(1)
    assert idle[0].recv(10) == b""
    for conn in idle:
        conn.close()


def test_flow_tokens_outlive_their_writer(env: Env) -> None:
    # qmgr fills master's pipe; cleanup started later still finds the tokens (the holder keeps the FIFO open).
    run_report(env, [unix_listener(env.tmp / "a.sock")], mode="tokens-put", report="put.json")
    report = run_report(env, [unix_listener(env.tmp / "b.sock")], mode="tokens-get", report="get.json")
    assert report["tokens"] == 7


def test_stamps_are_cleared_at_holder_start(tmp_path: Path) -> None:
    e = Env(tmp_path)
    e.stamps.mkdir()
    (e.stamps / "old").write_text("")
    e.start_holder()
    try:
        assert not (e.stamps / "old").exists()
        assert stat.S_ISFIFO(e.flow.stat().st_mode) and stat.S_IMODE(e.flow.stat().st_mode) == 0o660
    finally:
        e.close()


# --------------------------------------------------------------------------- kick and protocol


def test_kick_sends_the_wakeup_byte(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    proc = subprocess.Popen([PYTHON, "-I", "-S", str(BRIDGE), "kick", "--inet", f"127.0.0.1:{port}"])
    conn, _unused = server.accept()
    assert conn.recv(10) == b"W"
    conn.close()
    assert proc.wait(timeout=10) == 0
    server.close()


def test_encode_decode_roundtrip() -> None:
    message = {"unit": "postfix-default-smtp-inet@3.service", "maxproc": "100", "stamp": ""}
    assert _masterless_bridge.decode(_masterless_bridge.encode(message)) == message
    with pytest.raises(_masterless_bridge.BridgeError):
        _masterless_bridge.encode({"unit": "a\nb"})


def test_listen_fds_only_for_this_pid() -> None:
    assert _masterless_bridge.listen_fds({"LISTEN_PID": "42", "LISTEN_FDS": "2"}, 42) == [3, 4]
    assert _masterless_bridge.listen_fds({"LISTEN_PID": "41", "LISTEN_FDS": "2"}, 42) == []
    assert _masterless_bridge.listen_fds({}, 42) == []


def test_usage() -> None:
    assert _masterless_bridge.main([]) == 2
    assert _masterless_bridge.main(["run", "--bogus", "x"]) == 1


def test_select_is_used_for_status_eof() -> None:
    # The skeletons treat any readability of fd 5 as "master is gone": EOF must be readable.
    a, b = socket.socketpair()
    b.close()
    assert select.select([a], [], [], 0)[0] == [a]
    a.close()


# --------------------------------------------------------------------------- endpoint (ExecStartPre of local listeners)


@pytest.mark.skipif(os.geteuid() != 0, reason="makes root-owned FIFOs")
@pytest.mark.parametrize("umask", [0, 0o022])
def test_endpoint_replaces_a_stale_socket_with_a_root_fifo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           umask: int) -> None:
    monkeypatch.setattr(_masterless_bridge, "_manager_umask", lambda: umask)
    public = tmp_path / "public"
    public.mkdir()
    os.chown(public, 0, 1)
    os.chmod(public, 0o2710)  # Debian's public/: set-gid, a FIFO made there would get its group
    stale = unix_listener(public / "pickup")
    try:
        assert _masterless_bridge.main(["endpoint", "--fifo-mode", "0622", "--", str(public / "pickup")]) == 0
    finally:
        stale.close()
    st = os.lstat(public / "pickup")
    # What systemd's fifo_address_create() accepts: a FIFO, root:root, its mode less its own umask.
    assert stat.S_ISFIFO(st.st_mode) and (st.st_uid, st.st_gid) == (0, 0)
    assert st.st_mode & 0o777 == 0o622 & ~umask
    # FIFO -> unix: the FIFO goes, systemd binds the socket.
    assert _masterless_bridge.main(["endpoint", "--", str(public / "pickup")]) == 0
    assert not os.path.lexists(public / "pickup")
    assert _masterless_bridge.main(["endpoint", "--", str(public / "pickup")]) == 0  # nothing there: fine


def test_endpoint_removes_only_the_name(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep")
    private = tmp_path / "private"
    private.mkdir()
    (private / "smtp").symlink_to(target)
    assert _masterless_bridge.main(["endpoint", "--", str(private / "smtp")]) == 0
    assert not os.path.lexists(private / "smtp") and target.read_text() == "keep"
    # A directory at the name fails, as master(8)'s unlink() does; nothing is removed.
    (private / "dir").mkdir()
    (private / "dir" / "x").write_text("keep")
    assert _masterless_bridge.main(["endpoint", "--", str(private / "dir")]) == 1
    assert (private / "dir" / "x").read_text() == "keep"
    # The directory itself is not followed through a symlink.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "pickup").write_text("keep")
    (tmp_path / "public").symlink_to(tmp_path / "elsewhere")
    assert _masterless_bridge.main(["endpoint", "--", str(tmp_path / "public" / "pickup")]) == 1
    assert (tmp_path / "elsewhere" / "pickup").read_text() == "keep"
    assert _masterless_bridge.main(["endpoint", "--", "relative/path"]) == 1


def _nobody() -> tuple[str, str, int, int]:
    import grp
    import pwd

    user = pwd.getpwnam("nobody")
    group = grp.getgrgid(user.pw_gid)
    return user.pw_name, group.gr_name, user.pw_uid, user.pw_gid


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_endpoint_is_given_to_mail_owner_by_descriptor(tmp_path: Path) -> None:
    owner, group, uid, gid = _nobody()
    private = tmp_path / "private"
    private.mkdir()
    unix_listener(private / "smtp").close()
    os.mkfifo(private / "pickup", 0o622)
    for name in ("smtp", "pickup"):
        assert _masterless_bridge.main(["endpoint", "--owner", owner, "--group", group, "--", str(private / name)]) == 0
        st = os.lstat(private / name)
        assert (st.st_uid, st.st_gid) == (uid, gid)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_endpoint_owner_never_follows_or_takes_a_hard_link(tmp_path: Path) -> None:
    """mail_owner controls the directory: a symlink, a regular file or a second link at the name is left alone."""
    owner, group, _uid, _gid = _nobody()
    private = tmp_path / "private"
    private.mkdir()
    secret = tmp_path / "shadow"
    secret.write_text("root only\n")
    (private / "smtp").symlink_to(secret)
    (private / "file").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    os.link(tmp_path / "fifo", private / "linked")
    for name in ("smtp", "file", "linked"):
        assert _masterless_bridge.main(["endpoint", "--owner", owner, "--group", group, "--", str(private / name)]) == 1
    assert os.stat(secret).st_uid == 0 and os.lstat(private / "smtp").st_uid == 0
    assert os.stat(tmp_path / "fifo").st_uid == 0


# --------------------------------------------------------------------------- forking pools (--forks)

FORKING = ["--max-use", "100", "--forks", "8"]


def daemons_ready(out: Path) -> list[Path]:
    return list(out.parent.glob(out.name + ".*.ready"))


def wait_daemons(out: Path, count: int, timeout: float = 10.0) -> int:
    end = time.monotonic() + timeout
    while len(daemons_ready(out)) < count and time.monotonic() < end:
        time.sleep(0.02)
    return len(daemons_ready(out))


def test_a_forking_pool_serves_a_burst_from_one_unit(env: Env) -> None:
    """Clients that wait when the first worker registers get daemons its bridge forks (granted at once), and
    later ones too (asked over the control channel): no unit start, as master forks; maxproc still holds."""
    listen = unix_listener(env.tmp / "pool.sock")
    clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _unused in range(3)]
    for client in clients:
        client.connect(str(env.tmp / "pool.sock"))  # they wait in the backlog, as at a socket activation
    proc, out = env.bridge([listen], mode="busy", unit="t-p-unix@1.service", maxproc="4", extra=FORKING)
    # 3 waiting: the first daemon plus 2 granted; all busy and 3 still wait: one more is asked for (maxproc 4).
    assert wait_daemons(out, 4) == 4
    time.sleep(0.3)
    assert len(daemons_ready(out)) == 4
    assert env.status()["t-p-unix"]["workers"] == ["t-p-unix@1.service"] * 4
    assert not [c for c in systemctl_calls(env) if c.startswith("start")]
    # The bridge waits for its daemons; it ends when they have, and fails when one of them did (crash gate).
    os.kill(int(daemons_ready(out)[0].name.split(".")[-2]), signal.SIGKILL)
    assert env.holder is not None
    env.holder.send_signal(signal.SIGHUP)  # reload: the other daemons see their status channel close and exit
    assert proc.wait(timeout=10) == 1
    for client in clients:
        client.close()


def test_a_further_daemon_needs_the_holders_grant(env: Env) -> None:
    """A process in a forking unit's cgroup (a compromised daemon) cannot register daemons beside the one
    the unit's bridge registered, nor can a unit without --forks in the unit set take a control channel."""
    listen = unix_listener(env.tmp / "pool.sock")
    _unused, out = env.bridge([listen], mode="busy", unit="t-p-unix@1.service", maxproc="4", extra=FORKING)
    assert wait_daemons(out, 1) == 1
    me_proc = env.proc / str(os.getpid())
    me_proc.mkdir(exist_ok=True)
    (me_proc / "cgroup").write_text("0::/t.slice/t-p-unix@1.service\n")
    mine, peer = socket.socketpair()
    with pytest.raises(_masterless_bridge.BridgeError, match="without a grant"):
        _masterless_bridge.register(str(env.sock), {"unit": "t-p-unix@1.service", "sibling": "1"}, [peer.fileno()])
    proc, _out = env.bridge([unix_listener(env.tmp / "q.sock")], unit="t-q-unix@1.service", maxproc="4",
                            extra=["--max-use", "100"], claim=["--forks", "8"], report="q.json")
    assert "may not run several daemons" in refusal(proc)
    assert len(env.status()["t-p-unix"]["workers"]) == 1  # type: ignore[arg-type]
    mine.close()
    peer.close()


def test_the_first_pool_after_idle_starts_the_pools_mail_needs_next(env: Env) -> None:
    """Instead of one socket activation after the other: cleanup, trivial-rewrite and proxymap at once, then
    also the pools of the last busy period."""
    options = ["--holder", str(env.sock), "--flow", str(env.flow), "--maxproc", "0", "--max-use", "100"]
    env.add_unit("t-cleanup-unix@.service", options, daemon="cleanup")
    env.add_unit("t-rewrite-unix@.service", options[:-2], daemon="trivial-rewrite")
    env.add_unit("t-local-unix@.service", options, daemon="local")
    smtpd, out = env.bridge([unix_listener(env.tmp / "s.sock")], mode="daemon", unit="t-s-inet@1.service", maxproc="0",
                            extra=["--max-use", "100"])
    assert wait_for(Path(str(out) + ".ready"))
    assert wait_calls(env, 1) == ["start --no-block t-cleanup-unix@1.service t-rewrite-unix@1.service"]
    local, out2 = env.bridge([unix_listener(env.tmp / "l.sock")], mode="daemon", unit="t-local-unix@1.service",
                             maxproc="0", extra=["--max-use", "100"], report="l.json")
    assert wait_for(Path(str(out2) + ".ready"))
    started = [env.bridge([unix_listener(env.tmp / f"{name}.sock")], mode="daemon", unit=f"t-{name}-unix@1.service",
                          maxproc="0", extra=extra, report=f"{name}.json", listed=False)
               for name, extra in (("cleanup", ["--max-use", "100"]), ("rewrite", []))]  # the companions run
    assert all(wait_for(Path(str(report) + ".ready")) for _proc, report in started)
    for proc in (smtpd, local, *(p for p, _report in started)):  # the instance idles out
        proc.kill()
        proc.wait()
    time.sleep(0.3)
    _unused, out3 = env.bridge([unix_listener(env.tmp / "s2.sock")], mode="daemon", unit="t-s-inet@1.service",
                               maxproc="0", extra=["--max-use", "100"], report="s2.json")
    assert wait_for(Path(str(out3) + ".ready"))
    assert wait_calls(env, 2)[1] == "start --no-block t-cleanup-unix@1.service t-local-unix@1.service t-rewrite-unix@1.service"
