# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host layer: the one way the collection runs commands, reads Postfix and writes files.

Private to the mailfleet.postfix collection; the API may change without notice.

Everything that acts on a host goes through here:

- a runner (``Runner``): ``ModuleRunner`` inside a module, ``local_run`` on the host alone
  (the generator, tests), ``run_with_tty`` for Postfix commands whose messages go to a terminal,
  ``stream_lines`` for output read line by line as it comes (``postqueue -j`` of a large queue);
- ``systemctl`` and its readers (``unit_states``, ``active``, ``list_units``);
- ``postconf_x``: main.cf values as the daemons see them (``postconf -x``), parsed once;
- ``Writer``: files, links, masks and directories with mode and owner, check mode, diff and backup,
  each write staged next to its target, fsync'ed and renamed (``write_atomic``);
- ``Action`` and ``execute``: a plan is a list of actions computed by a pure function from what
  the host has and what is wanted; check mode reports it, a real run executes the same list.

Standard library only: the generator and the jail sync run it on hosts without Ansible. It is
also cheap to import (no typing or dataclasses at run time, other modules imported where used):
the generator imports it at every boot and daemon-reload.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any, Callable, Generator, Mapping, Optional, Protocol, Sequence

    class Runner(Protocol):
        """Runs argv in the C locale and returns (exit code, stdout, stderr)."""

        def __call__(self, argv: Sequence[str], /) -> tuple[int, str, str]:  # any function of one argv
            ...

    class Host(Protocol):
        """The part of AnsibleModule the writer and the staged config writes use."""

        @property
        def tmpdir(self) -> str:
            ...

        def backup_local(self, fn: str) -> str:
            ...
else:
    Runner = Host = object  # for annotations only; importable by name without typing

SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
COMMAND_TIMEOUT = 120
# Text of files Postfix reads as bytes (a Latin-1 comment in master.cf) round-trips unchanged.
BYTES_KEPT = "surrogateescape"
MASK_TARGET = "/dev/null"


class CommandError(Exception):
    """A command that failed; the message names it and carries its own words."""


class HostError(Exception):
    """A path the writer refuses to touch (it would replace something that is not its kind)."""

    def __init__(self, message: str, *, path: str) -> None:
        self.path = path
        super().__init__(message)


class Record:
    """A plain value object. dataclasses cost ~2 ms per class at import, and the generator
    that imports these modules runs at every boot and daemon-reload."""

    _fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(self._fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(self._fields)} values")
        values = dict(zip(self._fields, args))
        for key, value in kwargs.items():
            if key not in self._fields or key in values:
                raise TypeError(f"{type(self).__name__}: unexpected or repeated field '{key}'")
            values[key] = value
        for key in self._fields:
            if key not in values and not hasattr(type(self), key):
                raise TypeError(f"{type(self).__name__}: missing field '{key}'")
        self.__dict__.update(values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and type(other) is type(self) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(repr(v) for v in self.to_dict().values()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._fields}


# --------------------------------------------------------------------------- running


def c_env(base: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The environment Postfix commands get: C locale, no pager, and no MAIL_CONFIG that would
    redirect them to another instance."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k != "MAIL_CONFIG"}
    env.update(LC_ALL="C", LANG="C", SYSTEMD_PAGER="")
    return env


class ModuleRunner:
    """A Runner over AnsibleModule.run_command (its logging and no_log handling)."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def __call__(self, argv: Sequence[str]) -> tuple[int, str, str]:
        env = {"LANG": "C", "LC_ALL": "C", "SYSTEMD_PAGER": ""}
        code, out, err = self.module.run_command(list(argv), environ_update=env)
        return code, out, err


class Spawned:
    """A child started with posix_spawn, its stdout and stderr captured; result() waits for it.

    posix_spawn costs the caller less start-up time than the subprocess module (the generator
    starts postconf first and reads it last)."""

    def __init__(self, argv: Sequence[str], env: Optional[Mapping[str, str]] = None) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        actions = [(os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
        environ = dict(env) if env is not None else {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
        try:
            program = argv[0]
            if "/" not in program:
                import shutil

                program = shutil.which(program, path=environ.get("PATH")) or program
            self.pid = os.posix_spawn(program, list(argv), environ, file_actions=actions)
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        self.fds = (out_r, err_r)
        self.done: Optional[tuple[int, str, str]] = None

    def result(self) -> tuple[int, str, str]:
        """(exit code, stdout, stderr), read as bytes with surrogateescape."""
        if self.done is not None:
            return self.done
        import select

        chunks: dict[int, list[bytes]] = {fd: [] for fd in self.fds}
        open_fds = list(self.fds)
        try:
            while open_fds:
                for fd in select.select(open_fds, [], [], 30)[0] or open_fds:
                    data = os.read(fd, 65536)
                    if data:
                        chunks[fd].append(data)
                    else:
                        open_fds.remove(fd)
                        os.close(fd)
        finally:
            for fd in open_fds:
                os.close(fd)
            status = os.waitpid(self.pid, 0)[1]
        out, err = (b"".join(chunks[fd]).decode("utf-8", BYTES_KEPT) for fd in self.fds)
        self.done = os.waitstatus_to_exitcode(status), out, err
        return self.done


def local_run(argv: Sequence[str]) -> tuple[int, str, str]:
    """The Runner outside Ansible."""
    try:
        return Spawned(argv, c_env()).result()
    except OSError as exc:
        return 127, "", f"{argv[0]}: {exc.strerror}"


STREAM_LINE_MAX = 4 << 20  # bytes; a longer line is skipped, never held (postqueue -j: one message per line)
OVERLONG_LINE = "\0 line longer than the limit, skipped\n"


def stream_lines(argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT,
                 line_max: int = STREAM_LINE_MAX) -> Generator[str, None, None]:
    """stdout of argv line by line as it comes, for output too large to hold (postqueue -j of a big
    queue); CommandError at the end when the command failed, or was killed after ``timeout`` seconds.

    stderr goes to a temporary file, so a chatty command cannot block on a full pipe. A line longer
    than ``line_max`` bytes comes as OVERLONG_LINE; bytes that are not UTF-8 are replaced (the
    output may carry what the mail owner wrote, and goes into reports and metrics)."""
    import subprocess
    import tempfile
    import threading

    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                    env=c_env())
        except OSError as exc:
            raise CommandError(f"{' '.join(argv)} failed: {exc.strerror}") from None
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            proc.kill()

        timer = threading.Timer(timeout, expire)
        timer.start()
        stdout = proc.stdout  # a pipe: Popen was asked for one
        try:
            while stdout is not None:
                raw = stdout.readline(line_max + 1)
                if not raw:
                    break
                if len(raw) > line_max and not raw.endswith(b"\n"):
                    while raw and not raw.endswith(b"\n"):
                        raw = stdout.readline(line_max)
                    yield OVERLONG_LINE
                    continue
                yield raw.decode("utf-8", "replace")
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()  # the caller stopped reading
            if proc.stdout is not None:
                proc.stdout.close()
            code = proc.wait()
        if code != 0:
            err.seek(0)
            detail = f"no end after {timeout:g} s" if expired else err.read().decode("utf-8", "replace").strip()
            raise CommandError(f"{' '.join(argv)} failed: {detail or f'exit {code}'}")


def run_with_tty(argv: Sequence[str], *, env: Mapping[str, str]) -> tuple[int, str]:
    """Run a Postfix command with stderr on a terminal (postlog writes only there); its output."""
    import pty
    import time

    try:
        primary, secondary = pty.openpty()
    except OSError:  # no pty available: Postfix's own messages still come, postlog's do not
        primary, secondary = os.pipe()
    try:
        pid = os.posix_spawn(argv[0], list(argv), dict(env), file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0), (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_DUP2, secondary, 2)])
    except OSError as exc:
        os.close(primary)
        os.close(secondary)
        return 127, f"{argv[0]}: {exc}"
    os.close(secondary)
    chunks = []
    deadline = time.monotonic() + COMMAND_TIMEOUT
    try:
        while _readable(primary, deadline):
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(primary)
    rc = _wait(pid, deadline)
    if rc is None:
        chunks.append(f"\n{argv[0]}: no answer after {COMMAND_TIMEOUT} s".encode())
        rc = 124
    return rc, b"".join(chunks).decode("utf-8", "replace")


def _readable(fd: int, deadline: float) -> bool:
    import select
    import time

    remaining = deadline - time.monotonic()
    return remaining > 0 and bool(select.select([fd], [], [], remaining)[0])


def read_all(fd: int, deadline: float) -> Optional[bytes]:
    """Everything fd yields up to its end, or None when the deadline (time.monotonic()) passes first."""
    chunks: list[bytes] = []
    while _readable(fd, deadline):
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
    return None


def _wait(pid: int, deadline: float) -> Optional[int]:
    """The exit code, or None once killed for not ending by the deadline (at least a second on)."""
    import time

    end = max(deadline, time.monotonic() + 1)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > end:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.02)


def checked(run: Runner, argv: Sequence[str]) -> str:
    """stdout of argv, or CommandError naming the command and its message."""
    code, out, err = run(argv)
    if code != 0:
        raise CommandError(f"{' '.join(argv)} failed: {(err or out).strip() or f'exit {code}'}")
    return out


class Tools(Record):
    """Paths of the Postfix commands (postconf, postfix); None when Postfix is not installed."""

    _fields = ("postconf", "postfix")
    postconf: Optional[str]
    postfix: Optional[str]

    @classmethod
    def discover(cls) -> Tools:
        import shutil

        path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
        return cls(postconf=shutil.which("postconf", path=path), postfix=shutil.which("postfix", path=path))


# --------------------------------------------------------------------------- postconf


def parse_postconf(out: str) -> dict[str, str]:
    """'name = value' lines of postconf into a dict (an empty value is written 'name =')."""
    facts: dict[str, str] = {}
    for line in out.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            facts[name.strip()] = value.strip()
        elif line.endswith(" ="):
            facts[line[:-2].strip()] = ""
    return facts


def postconf_x(run: Runner, config_dir: str, names: Sequence[str] = (), *, postconf: str = "postconf"
               ) -> dict[str, str]:
    """Values of main.cf as the daemons see them ($name expanded); every parameter without names."""
    code, out, err = run([postconf, "-c", config_dir, "-x", *names])
    if code != 0:
        raise CommandError(f"postconf -c {config_dir} -x failed: {(err or out).strip() or f'exit {code}'}")
    return parse_postconf(out)


# --------------------------------------------------------------------------- systemctl


def systemctl(run: Runner, *args: str) -> str:
    return checked(run, ["systemctl", *args])


def unit_states(run: Runner, units: Sequence[str], props: str = "Id,LoadState,ActiveState,SubState,Result"
                ) -> dict[str, dict[str, str]]:
    """Id -> properties of each unit, in one systemctl call."""
    if not units:
        return {}
    code, out, _unused = run(["systemctl", "show", "-p", props, "--", *units])
    states: dict[str, dict[str, str]] = {}
    for block in out.split("\n\n") if code == 0 else []:
        state = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if state.get("Id"):
            states[state["Id"]] = state
    return states


def unit_state(run: Runner, unit: str) -> dict[str, str]:
    code, out, _unused = run(["systemctl", "show", "-p", "LoadState,ActiveState,SubState", "--", unit])
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line) if code == 0 else {}


def active(run: Runner, unit: str) -> bool:
    return unit_state(run, unit).get("ActiveState") in ("active", "reloading", "activating")


def enabled(run: Runner, unit: str) -> bool:
    code, out, _unused = run(["systemctl", "is-enabled", "--", unit])
    return code == 0 and out.strip() == "enabled"


def list_units(run: Runner, pattern: str, *options: str) -> list[list[str]]:
    """systemctl list-units rows (unit, load, active, sub) of the units matching pattern."""
    code, out, _unused = run(["systemctl", "list-units", "--all", "--plain", "--no-legend", *options, "--", pattern])
    rows = []
    for line in out.splitlines() if code == 0 else []:
        words = line.split()
        if words and words[0] in ("\u25cf", "*"):  # the failed-unit bullet, should --plain ever keep it
            words = words[1:]
        if len(words) >= 4:
            rows.append(words[:4])
    return rows


def booted() -> bool:
    """systemd is this host's init (sd_booted)."""
    return os.path.isdir("/run/systemd/system")


# --------------------------------------------------------------------------- files


def read_text(path: str) -> str:
    """File content as str, undecodable bytes kept (surrogateescape) so writes are lossless."""
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8", BYTES_KEPT)


def copy_owner(reference: str, target: str) -> None:
    info = os.stat(reference)
    try:
        os.chown(target, info.st_uid, info.st_gid)
    except PermissionError:
        pass  # an unprivileged caller keeps its own ownership, as cp -p does


def fsync_path(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a pipe or a signal may take fewer at a time)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomic(path: str, data: bytes, *, mode: int = 0o644, uid: int = -1, gid: int = -1,
                 temp: str = "") -> None:
    """Replace path by data, durably: a crash leaves the old file or the new one, never a part.

    The temporary file sits next to path (the rename never crosses file systems), is created
    exclusively without following links and mode 0600 until its own mode and owner are set, and
    is fsync'ed with its directory. ``temp`` fixes its name (a leftover of a crash is replaced)."""
    directory, base = os.path.split(path)
    directory = directory or "."
    tmp = os.path.join(directory, temp or f".{base}.mailfleet-{os.getpid()}")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, mode)
            if uid != -1 or gid != -1:
                # After fchmod: a file root no longer owns would need CAP_FOWNER to change its mode.
                os.fchown(fd, uid, gid)
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        existing = _lstat(path)
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise HostError(f"{path} is a directory; refusing to replace it", path=path)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_path(directory, directory=True)


def _lstat(path: str) -> Optional[os.stat_result]:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


class LocalHost:
    """Host for use without Ansible: the same backup names as AnsibleModule.backup_local."""

    def __init__(self, tmpdir: Optional[str] = None) -> None:
        import tempfile

        self._tmpdir = tmpdir or tempfile.gettempdir()

    @property
    def tmpdir(self) -> str:
        return self._tmpdir

    def backup_local(self, fn: str) -> str:
        import shutil
        import time

        stamp = time.strftime("%Y-%m-%d@%H:%M:%S~", time.localtime())
        dest = f"{fn}.{os.getpid()}.{stamp}"
        shutil.copy2(fn, dest)
        copy_owner(fn, dest)
        return dest


class FileSpec(Record):
    """One wanted path: a file (content), a link, a mask, a directory, or nothing (absent).

    ``mode`` None keeps the mode an existing file has (0644 for a new one); ``owner``/``group``
    None keep the current ones (root's for a new file)."""

    _fields = ("path", "content", "mode", "link", "directory", "absent", "owner", "group", "only_if_link_to")
    path: str
    content: Optional[str] = None
    mode: Optional[int] = 0o644
    link: str = ""
    directory: bool = False
    absent: bool = False
    owner: Optional[int] = None
    group: Optional[int] = None
    only_if_link_to: str = ""  # absent: remove only a link to this target (a mask), nothing else

    @classmethod
    def mask(cls, path: str) -> FileSpec:
        return cls(path, link=MASK_TARGET)

    @property
    def kind(self) -> str:
        return "absent" if self.absent else "link" if self.link else "directory" if self.directory else "file"


class Observed(Record):
    """What a path is now."""

    _fields = ("kind", "content", "mode", "uid", "gid", "link")
    kind: str  # absent, file, link, directory, other
    content: Optional[str] = None
    mode: int = 0
    uid: int = -1
    gid: int = -1
    link: str = ""


def observe(path: str) -> Observed:
    st = _lstat(path)
    if st is None:
        return Observed("absent")
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        return Observed("link", link=os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return Observed("directory", mode=mode, uid=st.st_uid, gid=st.st_gid)
    if not stat.S_ISREG(st.st_mode):
        return Observed("other")
    return Observed("file", content=_regular_content(path, st), mode=mode, uid=st.st_uid, gid=st.st_gid)


OBSERVED_SIZE_MAX = 16 << 20  # bytes; a larger file is compared as unknown content (rewritten)


def _regular_content(path: str, seen: os.stat_result) -> Optional[str]:
    """The content of the regular file lstat saw, or None. Read through a descriptor that is that
    same file: a directory another user may write (node_exporter's) could swap in a link to any file
    or a FIFO between lstat and open."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino) \
                or st.st_size > OBSERVED_SIZE_MAX:
            return None
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", BYTES_KEPT)
    except OSError:
        return None
    finally:
        os.close(fd)


def differs(spec: FileSpec, now: Optional[Observed] = None) -> bool:
    """True when the path is not what spec wants (pure over the observation)."""
    now = now or observe(spec.path)
    if spec.absent:
        return now.kind != "absent" and (not spec.only_if_link_to or (now.kind == "link"
                                                                      and now.link == spec.only_if_link_to))
    if spec.kind != now.kind:
        return True
    if spec.link:
        return now.link != spec.link
    owner_differs = ((spec.owner is not None and spec.owner != now.uid)
                     or (spec.group is not None and spec.group != now.gid))
    mode_differs = spec.mode is not None and spec.mode != now.mode
    if spec.directory:
        return mode_differs or owner_differs
    return now.content != spec.content or mode_differs or owner_differs


class Writer:
    """The one file writer: makes paths what their FileSpec says, only where they differ.

    Records what changed (``changed``), the diff Ansible shows (``diffs``) and backups; in check
    mode it records the same and writes nothing. ``refuse_replacing`` names kinds of existing
    paths that must not be replaced by another kind (a file where a mask is wanted)."""

    def __init__(self, check_mode: bool = False, host: Optional[Host] = None,
                 refuse_replacing: tuple[str, ...] = ()) -> None:
        self.check_mode = check_mode
        self.host = host
        self.refuse_replacing = refuse_replacing
        self.changed: list[str] = []
        self.diffs: list[dict[str, str]] = []
        self.backups: dict[str, str] = {}

    def ensure(self, spec: FileSpec, *, backup: bool = False) -> bool:
        now = observe(spec.path)
        if not differs(spec, now):
            return False
        if now.kind in self.refuse_replacing and not spec.absent and now.kind != spec.kind:
            raise HostError(f"{spec.path} exists and is not a {spec.kind} this collection manages; "
                            "remove it, or let the module replace it", path=spec.path)
        self.changed.append(spec.path)
        self.diffs.append({"before_header": spec.path, "after_header": spec.path, "before": _shown(now),
                           "after": "" if spec.absent else _shown_spec(spec)})
        if self.check_mode:
            return True
        if backup and now.kind == "file":
            self.backups[spec.path] = (self.host or LocalHost()).backup_local(spec.path)
        apply(spec, now)
        return True

    def ensure_all(self, specs: Sequence[FileSpec]) -> list[str]:
        return [s.path for s in specs if self.ensure(s)]


def apply(spec: FileSpec, now: Optional[Observed] = None) -> None:
    """Make one path what spec wants (no check mode: Writer.ensure decides whether to call it)."""
    now = now or observe(spec.path)
    parent = os.path.dirname(spec.path)
    if spec.absent:
        if now.kind == "directory":
            # Never a tree by accident: a path meant to be a file that is a directory is a mistake.
            raise HostError(f"{spec.path} is a directory; refusing to remove it", path=spec.path)
        if now.kind != "absent":
            os.unlink(spec.path)
        return
    if parent:
        os.makedirs(parent, mode=0o755, exist_ok=True)
    uid = spec.owner if spec.owner is not None else -1
    gid = spec.group if spec.group is not None else -1
    if spec.directory:
        if now.kind != "directory":
            os.mkdir(spec.path, spec.mode if spec.mode is not None else 0o755)
        if spec.mode is not None:
            os.chmod(spec.path, spec.mode)
        if uid != -1 or gid != -1:
            os.chown(spec.path, uid, gid)
        return
    if spec.link:
        tmp = os.path.join(parent, f".{os.path.basename(spec.path)}.mailfleet-{os.getpid()}")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(spec.link, tmp)
        os.replace(tmp, spec.path)
        fsync_path(parent or ".", directory=True)
        return
    kept = now
    if now.kind == "link" and spec.mode is None:
        # A link replaced by a file keeps what the file it pointed to had, never more access.
        try:
            target = os.stat(spec.path)
            kept = Observed("file", mode=stat.S_IMODE(target.st_mode), uid=target.st_uid, gid=target.st_gid)
        except OSError:
            kept = Observed("absent")
    mode = spec.mode if spec.mode is not None else (kept.mode if kept.kind == "file" else 0o644)
    if kept.kind == "file" and spec.owner is None and spec.group is None:
        uid, gid = kept.uid, kept.gid  # a rewritten file keeps its owner, as an edit in place would
    write_atomic(spec.path, (spec.content or "").encode("utf-8", BYTES_KEPT), mode=mode, uid=uid, gid=gid)


def _shown(now: Observed) -> str:
    if now.kind == "file":
        return now.content or ""
    if now.kind == "link":
        return f"-> {now.link}\n"
    return "" if now.kind == "absent" else f"({now.kind})\n"


def _shown_spec(spec: FileSpec) -> str:
    if spec.link:
        return f"-> {spec.link}\n"
    return "(directory)\n" if spec.directory else spec.content or ""


# --------------------------------------------------------------------------- plans


class Action(Record):
    """One step of a plan: ``what`` is reported (check mode included), ``op`` names the function
    of the executor's table that performs it with ``args``."""

    _fields = ("what", "op", "args")
    what: str
    op: str
    args: tuple[Any, ...] = ()


def execute(plan: Sequence[Action], ops: Mapping[str, Callable[..., Any]], *, check_mode: bool,
            done: Optional[list[str]] = None) -> list[str]:
    """Run the plan's actions in order (none in check mode); returns what was (or would be) done.

    ``done`` receives each action as it starts, so a caller that reports a failure names the
    actions already taken."""
    record = done if done is not None else []
    for action in plan:
        record.append(action.what)
        if not check_mode:
            ops[action.op](*action.args)
    return record


def failed_after(exc: BaseException, done: Sequence[str]) -> str:
    """A plan's error with the actions taken before it (a master stopped, say): the admin's next question."""
    before = list(done[:-1])
    return str(exc) + (f" (done before it: {'; '.join(before)})" if before else "")
