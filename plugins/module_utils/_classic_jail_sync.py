# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host side of the chroot jail: probe the host, sync the jail, verify it from inside.

Private to the mailfleet.postfix collection; the API may change without notice.
Standard library only (with _host): the instance_unit module installs both on hosts in
/usr/libexec/mailfleet-postfix/mailfleet_postfix/, run by the launcher chroot-sync beside
them, which the jail's .path unit runs when a copied host file changes:

    chroot-sync refresh QUEUE_DIRECTORY [--reload]
        re-copy what the manifest lists from its sources; with --reload, reload the
        instance's running master when anything changed

Adding and removing items needs the plan (master.cf + main.cf), which the chroot
module computes; ``refresh`` only keeps the listed items equal to their sources.

Safety: the jail is only ever written below etc/, lib*/, usr/, dev/ and CA
directories of queue_directory, never into a queue subdirectory, never through a
symbolic link, and only what the manifest says this code placed is removed.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import json
import os
import platform
import posixpath
import pwd
import re
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

from . import _host

MANIFEST = "etc/.mailfleet-chroot-manifest"
MANIFEST_VERSION = 1
QUEUE_SUBDIRS = frozenset((
    "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "maildrop",
    "pid", "private", "public", "saved", "trace",
))
ETC_CANDIDATES = (
    "/etc/resolv.conf", "/etc/hosts", "/etc/host.conf", "/etc/nsswitch.conf", "/etc/services",
    "/etc/localtime", "/etc/passwd", "/etc/nss_mdns.config",
)
_LIB_RE = re.compile(r"^lib(nss_[A-Za-z0-9_]+|resolv|gcc_s)\.so\.[0-9]+$")
# Mapped into every process before chroot: never copied, never followed.
_PRELOADED = ("libc.so", "ld-linux", "ld64.so", "ld-musl")
_HASH_RE = re.compile(r"^[0-9a-f]{8}\.r?[0-9]+$")
FILE_MODE = 0o644
DIR_MODE = 0o755


class JailError(Exception):
    """The jail cannot be synced or verified; the message says what and where."""


def safe_jail_path(path: str) -> str:
    """Normalize a jail-relative path; refuse escapes and queue subdirectories."""
    norm = posixpath.normpath(path)
    if norm.startswith("/") or norm in (".", "..") or norm.startswith("../") or "/../" in f"/{norm}/":
        raise JailError(f"jail path '{path}' escapes the queue directory")
    if norm.split("/", 1)[0] in QUEUE_SUBDIRS:
        raise JailError(f"jail path '{path}' is inside the queue subdirectory {norm.split('/', 1)[0]}/")
    return norm


# --------------------------------------------------------------------------- probe


def _loader_path() -> Optional[str]:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                name = posixpath.basename(path)
                if name.startswith("ld-") and ".so" in name:
                    return path
    except OSError:
        pass
    return None


def system_search_path() -> list[str]:
    """The dynamic loader's built-in search directories (what it searches inside a jail, without ld.so.cache)."""
    loader = _loader_path()
    if loader:
        try:
            out = subprocess.run([loader, "--help"], capture_output=True, text=True, timeout=10, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        dirs = [line.split("(")[0].strip() for line in out.splitlines() if "(system search path)" in line]
        if dirs:
            return dirs
    # Older glibc has no --help: the directory libc.so.6 was loaded from, then the usual ones.
    guesses = [posixpath.dirname(loader)] if loader else []
    guesses += ["/lib64", "/usr/lib64", "/lib", "/usr/lib"]
    return [d for i, d in enumerate(guesses) if d and os.path.isdir(d) and d not in guesses[:i]]


def elf_needed(path: str) -> list[str]:
    """DT_NEEDED entries of an ELF shared object (empty when it is not one)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(16 * 1024 * 1024)
    except OSError:
        return []
    if data[:4] != b"\x7fELF" or len(data) < 64:
        return []
    is64, end = data[4] == 2, "<" if data[5] == 1 else ">"
    # (e_phoff format/offset, e_phentsize offset, program header format, dynamic entry format)
    layout = (end + "Q", 32, 54, end + "IIQQQQQQ", end + "qQ") if is64 else (end + "I", 28, 42, end + "IIIIIIII", end + "iI")
    off_fmt, off_pos, ent_pos, ph_fmt, dyn_fmt = layout
    try:
        phoff = struct.unpack_from(off_fmt, data, off_pos)[0]
        phentsize, phnum = struct.unpack_from(end + "HH", data, ent_pos)
        loads: list[tuple[int, int, int]] = []
        dynamic: Optional[tuple[int, int]] = None
        for idx in range(phnum):
            ph = struct.unpack_from(ph_fmt, data, phoff + idx * phentsize)
            # Elf64_Phdr: type flags offset vaddr paddr filesz ...; Elf32_Phdr: type offset vaddr paddr filesz ...
            p_type, p_offset, p_vaddr, p_filesz = (ph[0], ph[2], ph[3], ph[5]) if is64 else (ph[0], ph[1], ph[2], ph[4])
            if p_type == 1:  # PT_LOAD
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == 2:  # PT_DYNAMIC
                dynamic = (p_offset, p_filesz)
        if dynamic is None:
            return []
        needed: list[int] = []
        strtab: Optional[int] = None
        step = struct.calcsize(dyn_fmt)
        for pos in range(dynamic[0], dynamic[0] + dynamic[1], step):
            tag, val = struct.unpack_from(dyn_fmt, data, pos)
            if tag == 0:  # DT_NULL
                break
            if tag == 1:  # DT_NEEDED
                needed.append(val)
            elif tag == 5:  # DT_STRTAB (a virtual address)
                strtab = val
        if strtab is None:
            return []
        base = next((off + strtab - vaddr for vaddr, off, size in loads if vaddr <= strtab < vaddr + size), None)
        if base is None:
            return []
        return [data[base + n: data.index(b"\0", base + n)].decode("ascii", "replace") for n in needed]
    except (struct.error, ValueError):
        return []


def _libc() -> tuple[str, str]:
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError, AttributeError):
        value = None
    if value and value.startswith("glibc "):
        return "glibc", value.split(" ", 1)[1]
    for directory in ("/lib", "/usr/lib"):
        try:
            if any(name.startswith("ld-musl-") for name in os.listdir(directory)):
                return "musl", ""
        except OSError:
            continue
    return "", ""


def _syslog_owner() -> str:
    try:
        st = os.lstat("/dev/log")
    except OSError:
        return "none"
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink("/dev/log")
        return "journald" if "/systemd/journal/" in target else "socket"
    return "socket"


def probe_host(extra_paths: Iterable[str] = ()) -> dict[str, Any]:
    """Host facts for _classic_chroot.HostFacts.from_dict()."""
    libc, version = _libc()
    lib_dirs: dict[str, list[str]] = {}
    needed: dict[str, list[str]] = {}
    if platform.system() == "Linux" and libc == "glibc":
        dirs = system_search_path()
        wanted: set[str] = set()
        for directory in dirs:
            try:
                wanted.update(n for n in os.listdir(directory) if _LIB_RE.match(n))
            except OSError:
                continue
        queue = sorted(wanted)
        while queue:  # follow DT_NEEDED so the planner can copy dependencies
            name = queue.pop()
            path = next((posixpath.join(d, name) for d in dirs if os.path.isfile(posixpath.join(d, name))), None)
            if path is None:
                continue
            needed[name] = elf_needed(path)
            for dep in needed[name]:
                if dep not in wanted and not dep.startswith(_PRELOADED):
                    wanted.add(dep)
                    queue.append(dep)
        for directory in dirs:
            present = sorted(n for n in wanted if os.path.isfile(posixpath.join(directory, n)))
            lib_dirs[directory] = present
    candidates = list(ETC_CANDIDATES) + [str(p) for p in extra_paths]
    files = sorted({p for p in candidates if p.startswith("/") and os.path.exists(p)})
    try:
        with open("/etc/nsswitch.conf", encoding="utf-8", errors="replace") as handle:
            nsswitch: Optional[str] = handle.read()
    except OSError:
        nsswitch = None
    return {
        "system": platform.system(),
        "libc": libc,
        "libc_version": version,
        "lib_dirs": lib_dirs,
        "files": files,
        "nsswitch": nsswitch,
        "syslog": _syslog_owner(),
        "needed": {k: v for k, v in needed.items() if v},
    }


# --------------------------------------------------------------------------- desired state


@dataclass(frozen=True)
class Want:
    """One filesystem object the jail should have."""

    path: str  # relative to the queue directory
    kind: str  # file, link
    data: bytes = b""
    target: str = ""  # link target
    mode: int = FILE_MODE
    item: str = ""  # plan item it belongs to
    uid: int = 0
    gid: int = 0

    def digest(self) -> str:
        if self.kind == "link":
            return "-> " + self.target
        return hashlib.sha256(self.data).hexdigest() + f" {self.mode:04o} {self.uid}:{self.gid}"


def sanitized_passwd(text: str) -> str:
    out = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 7 and not line.startswith(("+", "-")):
            parts[1] = "x"
            out.append(":".join(parts))
    return "\n".join(out) + ("\n" if out else "")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise JailError(f"cannot read {path}: {exc.strerror}") from exc


def _source(path: str) -> tuple[bytes, int, int, int]:
    """Content, read/write bits and owner of a host file, all from one open descriptor.

    A copy is never more open than its source (a 0640 root:postfix map stays that); execute,
    set-uid, set-gid and sticky bits are dropped: nothing in a jail is executed from it.
    """
    try:
        # O_NONBLOCK: a FIFO is refused below instead of blocking the open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise JailError(f"cannot read {path}: {exc.strerror}") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise JailError(f"{path} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read()
        except OSError as exc:
            raise JailError(f"cannot read {path}: {exc.strerror}") from exc
    return data, stat.S_IMODE(st.st_mode) & 0o666, st.st_uid, st.st_gid


def _file_want(path: str, source: str, item: str) -> Want:
    data, mode, uid, gid = _source(source)
    return Want(path, "file", data, mode=mode, item=item, uid=uid, gid=gid)


def _cert_wants(item_path: str, source: str) -> list[Want]:
    """*.pem files as regular files and hash links, as in the host's CA directory."""
    try:
        names = sorted(os.listdir(source))
    except OSError as exc:
        raise JailError(f"cannot list CA directory {source}: {exc.strerror}") from exc
    pems = {n for n in names if n.endswith(".pem") and os.path.isfile(posixpath.join(source, n))}
    out = [_file_want(posixpath.join(item_path, n), posixpath.join(source, n), item_path) for n in sorted(pems)]
    for name in names:
        if not _HASH_RE.match(name):
            continue
        full = posixpath.join(source, name)
        if not os.path.isfile(full):
            continue  # dangling
        target = os.readlink(full) if os.path.islink(full) else ""
        if target and "/" not in target and target in pems:
            out.append(Want(posixpath.join(item_path, name), "link", target=target, item=item_path))
        else:
            out.append(_file_want(posixpath.join(item_path, name), full, item_path))
    return out


def wants_for(items: Sequence[Mapping[str, Any]]) -> list[Want]:
    """What the jail should hold for plan items (dicts with path, kind, source)."""
    wants: list[Want] = []
    for item in items:
        path, kind, source = safe_jail_path(str(item["path"])), str(item["kind"]), str(item.get("source") or "")
        if kind == "file":
            wants.append(_file_want(path, source, path))
        elif kind == "passwd":
            raw, mode, uid, gid = _source(source)
            data = sanitized_passwd(raw.decode("utf-8", "replace")).encode()
            wants.append(Want(path, "file", data, mode=mode, item=path, uid=uid, gid=gid))
        elif kind == "certs":
            wants.extend(_cert_wants(path, source))
        elif kind == "socket":
            pass  # provided by the syslog daemon; checked in sync()
        else:
            raise JailError(f"unknown jail item kind '{kind}' for {path}")
    return wants


# --------------------------------------------------------------------------- sync


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    directories: list[str] = field(default_factory=list)  # created directories
    warnings: list[str] = field(default_factory=list)
    diff: list[dict[str, str]] = field(default_factory=list)
    before: list[str] = field(default_factory=list)  # "path digest" of what changes, for diff mode
    after: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed or self.directories)

    def to_dict(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated, "removed": self.removed,
                "directories": self.directories}


def check_queue_directory(queue: str, mail_owner_uid: int) -> None:
    """Refuse anything that is not a Postfix queue directory."""
    try:
        st = os.stat(queue)
    except OSError as exc:
        raise JailError(f"queue_directory {queue} does not exist ({exc.strerror})") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise JailError(f"queue_directory {queue} is not a directory")
    if queue.rstrip("/") in ("", "/"):
        raise JailError("queue_directory is '/'; refusing to build a jail there")
    if st.st_uid != 0:
        raise JailError(f"queue_directory {queue} is owned by uid {st.st_uid}, not root; "
                        "Postfix requires a root-owned queue directory, so this is not one")
    try:
        drop = os.lstat(posixpath.join(queue, "maildrop"))
    except OSError as exc:
        raise JailError(f"{queue} has no maildrop/ subdirectory; it is not a Postfix queue directory") from exc
    if not stat.S_ISDIR(drop.st_mode):
        raise JailError(f"{queue}/maildrop is not a directory; {queue} is not a Postfix queue directory")
    if drop.st_uid != mail_owner_uid:
        raise JailError(f"{queue}/maildrop is owned by uid {drop.st_uid}, not by the mail owner (uid {mail_owner_uid}); "
                        f"{queue} is not this instance's queue directory")


def _lstat(path: str) -> Optional[os.stat_result]:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _check_parent(queue: str, rel: str) -> list[str]:
    """Missing parent directories of rel; refuse symbolic links on the way."""
    missing = []
    for parent in _parents(rel):
        st = _lstat(posixpath.join(queue, parent))
        if st is None:
            missing.append(parent)
        elif stat.S_ISLNK(st.st_mode):
            raise JailError(f"{posixpath.join(queue, parent)} is a symbolic link; refusing to write through it")
        elif not stat.S_ISDIR(st.st_mode):
            raise JailError(f"{posixpath.join(queue, parent)} is not a directory")
    return missing


def _is_current(queue: str, want: Want, *, as_root: bool) -> bool:
    full = posixpath.join(queue, want.path)
    st = _lstat(full)
    if st is None:
        return False
    if as_root and (st.st_uid != want.uid or st.st_gid != want.gid) and not stat.S_ISLNK(st.st_mode):
        return False
    if want.kind == "link":
        return stat.S_ISLNK(st.st_mode) and os.readlink(full) == want.target
    if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != want.mode or st.st_size != len(want.data):
        return False
    return _read(full) == want.data


def _digest(full: str) -> str:
    st = _lstat(full)
    if st is None:
        return "(absent)"
    if stat.S_ISLNK(st.st_mode):
        return "-> " + os.readlink(full)
    if not stat.S_ISREG(st.st_mode):
        return "(not a regular file)"
    return hashlib.sha256(_read(full)).hexdigest() + f" {stat.S_IMODE(st.st_mode):04o} {st.st_uid}:{st.st_gid}"


def _write(queue: str, want: Want) -> None:
    full = posixpath.join(queue, want.path)
    existing = _lstat(full)
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise JailError(f"{full} is a directory; refusing to replace it")
    if want.kind != "link":
        # Root gives the copy its source's owner; anyone else (tests, check runs) keeps its own.
        owner = (want.uid, want.gid) if os.geteuid() == 0 else (-1, -1)
        try:
            _host.write_atomic(full, want.data, mode=want.mode, uid=owner[0], gid=owner[1])
        except _host.HostError as exc:
            raise JailError(str(exc)) from None
        return
    directory, base = posixpath.split(full)
    tmp = posixpath.join(directory, f".{base}.mailfleet-{os.getpid()}")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    os.symlink(want.target, tmp)
    os.replace(tmp, full)


def read_manifest(queue: str) -> dict[str, Any]:
    path = posixpath.join(queue, MANIFEST)
    st = _lstat(path)
    if st is None:
        return {"version": MANIFEST_VERSION, "items": [], "paths": [], "directories": []}
    if not stat.S_ISREG(st.st_mode):
        raise JailError(f"{path} is not a regular file")
    try:
        data = json.loads(_read(path).decode("utf-8"))
    except ValueError as exc:
        raise JailError(f"{path} is not valid JSON ({exc}); remove it to start over") from exc
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        raise JailError(f"{path} has an unknown format; remove it to start over")
    for key in ("items", "paths", "directories"):
        data.setdefault(key, [])
    return data


def _manifest_bytes(items: Sequence[Mapping[str, Any]], paths: Iterable[str], directories: Iterable[str]) -> bytes:
    data = {
        "version": MANIFEST_VERSION,
        "comment": "Written by mailfleet.postfix (chroot module); lists what it placed in this jail.",
        "items": [{"path": i["path"], "kind": i["kind"], "source": i.get("source", "")} for i in items],
        "paths": sorted(set(paths)),
        "directories": sorted(set(directories)),
    }
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def _is_text(want: Want) -> bool:
    return want.kind == "file" and want.path.startswith("etc/") and b"\0" not in want.data[:4096] and len(want.data) < 65536


def sync(queue: str, items: Sequence[Mapping[str, Any]], *, check: bool = False, diff: bool = False) -> SyncResult:
    """Bring the jail to exactly ``items``: copy what differs, remove what we placed and is no longer wanted."""
    result = SyncResult()
    as_root = os.geteuid() == 0
    manifest = read_manifest(queue)
    wants = wants_for(items)
    for item in items:
        if item["kind"] == "socket":
            st = _lstat(posixpath.join(queue, safe_jail_path(str(item["path"]))))
            if st is None or not stat.S_ISSOCK(st.st_mode):
                result.warnings.append(
                    f"{posixpath.join(queue, str(item['path']))} is not a socket: the syslog daemon must listen there "
                    f"(rsyslog: $AddUnixListenSocket {posixpath.join(queue, str(item['path']))})")
    wanted_paths = {w.path for w in wants}
    old_dirs = [safe_jail_path(d) for d in manifest["directories"]]
    new_dirs: list[str] = []
    for want in wants:
        for missing in _check_parent(queue, want.path):
            if missing not in new_dirs:
                new_dirs.append(missing)
    for directory in new_dirs:
        result.directories.append(directory)
        if not check:
            os.mkdir(posixpath.join(queue, directory), DIR_MODE)
            os.chmod(posixpath.join(queue, directory), DIR_MODE)
    for want in wants:
        full = posixpath.join(queue, want.path)
        if _is_current(queue, want, as_root=as_root):
            continue
        existed = _lstat(full) is not None
        (result.updated if existed else result.created).append(want.path)
        if existed:
            result.before.append(f"{want.path} {_digest(full)}")
        result.after.append(f"{want.path} {want.digest()}")
        if diff and _is_text(want):
            before = _read(full).decode("utf-8", "replace") if existed and os.path.isfile(full) else ""
            result.diff.append({"before_header": full, "after_header": full, "before": before,
                                "after": want.data.decode("utf-8", "replace")})
        if not check:
            _write(queue, want)
    for old in sorted(set(manifest["paths"]) - wanted_paths, reverse=True):
        rel = safe_jail_path(old)
        full = posixpath.join(queue, rel)
        st = _lstat(full)
        if st is None or stat.S_ISDIR(st.st_mode):
            continue
        result.removed.append(rel)
        result.before.append(f"{rel} {_digest(full)}")
        if diff and rel.startswith("etc/") and stat.S_ISREG(st.st_mode) and st.st_size < 65536:
            result.diff.append({"before_header": full, "after_header": full + " (removed)",
                                "before": _read(full).decode("utf-8", "replace"), "after": ""})
        if not check:
            _check_parent(queue, rel)
            os.unlink(full)
    keep_dirs = set(new_dirs) | {d for d in old_dirs if any(p.startswith(d + "/") for p in wanted_paths)}
    if not check:
        for directory in sorted(set(old_dirs) - keep_dirs, key=lambda d: -d.count("/")):
            try:
                os.rmdir(posixpath.join(queue, directory))
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    raise
    manifest_path = posixpath.join(queue, MANIFEST)
    if wants:
        # The manifest follows the items; it is not reported as a change of its own.
        data = _manifest_bytes(items, wanted_paths, keep_dirs)
        if not check and (_lstat(manifest_path) is None or _read(manifest_path) != data):
            _check_parent(queue, MANIFEST)
            _write(queue, Want(MANIFEST, "file", data))
    elif _lstat(manifest_path) is not None:
        result.removed.append(MANIFEST)
        if not check:
            os.unlink(manifest_path)
    return result


def refresh(queue: str) -> SyncResult:
    """Re-copy the manifest's items from their sources (the .path unit's job)."""
    manifest = read_manifest(queue)
    return sync(queue, manifest["items"])


def reload_master(queue: str) -> bool:
    """SIGHUP the instance's running master, as ``postfix reload`` does; False when none runs.

    Running daemons keep what they loaded from the old jail: Postfix initializes the resolver once
    per process and changes _res, so glibc does not re-read resolv.conf for it. master's reload
    makes every daemon finish its work and start afresh.
    """
    try:
        with open(posixpath.join(queue, "pid", "master.pid"), encoding="ascii") as handle:
            pid = int(handle.read().split()[0])
        with open(f"/proc/{pid}/comm", encoding="ascii") as handle:
            if handle.read().strip() != "master":
                return False
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError, IndexError):
        return False
    return True


# --------------------------------------------------------------------------- verify


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


def _child_checks(names: Sequence[str], services: Sequence[str], users: Sequence[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in names:
        try:
            infos = socket.getaddrinfo(name, None, 0, socket.SOCK_STREAM)
            addrs = sorted({str(info[4][0]) for info in infos})
            out.append({"check": f"host {name}", "ok": True, "detail": ", ".join(addrs)})
        except OSError as exc:
            out.append({"check": f"host {name}", "ok": False, "detail": str(exc)})
    for service in services:
        try:
            out.append({"check": f"service {service}/tcp", "ok": True, "detail": str(socket.getservbyname(service, "tcp"))})
        except OSError as exc:
            out.append({"check": f"service {service}/tcp", "ok": False, "detail": str(exc)})
    for user in users:
        try:
            entry = pwd.getpwnam(user)
            out.append({"check": f"user {user}", "ok": True, "detail": f"uid {entry.pw_uid}"})
        except KeyError:
            out.append({"check": f"user {user}", "ok": False, "detail": "not found"})
    return out


def verify(queue: str, user: str, *, names: Sequence[str] = (), services: Sequence[str] = (),
           users: Sequence[str] = (), timeout: float = 30.0) -> list[Check]:
    """Look names up from inside the jail as ``user``, the way a chrooted daemon would.

    Like chroot_uid(): resolve the user first, then setgid, initgroups, chroot, chdir, setuid.
    """
    if os.geteuid() != 0:
        raise JailError("verify must run as root (it chroots into the jail and switches to the mail owner)")
    try:
        entry = pwd.getpwnam(user)
    except KeyError as exc:
        raise JailError(f"mail owner '{user}' does not exist") from exc
    # getaddrinfo() encodes host names with the idna codec, imported on first use: inside the jail
    # the Python library is out of reach.
    codecs.lookup("idna")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 0
        try:
            os.close(read_fd)
            os.setgid(entry.pw_gid)
            os.initgroups(user, entry.pw_gid)
            os.chroot(queue)
            os.chdir("/")
            os.setuid(entry.pw_uid)
            payload = json.dumps({"checks": _child_checks(names, services, users)}).encode()
        except BaseException as exc:  # noqa: BLE001 - report anything to the parent
            payload = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
            code = 1
        try:
            _host.write_all(write_fd, payload)
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        report = _host.read_all(read_fd, time.monotonic() + timeout)
        if report is None:
            os.kill(pid, signal.SIGKILL)
            raise JailError(f"lookups inside the jail {queue} did not finish within {timeout:.0f} s "
                            "(a resolver that cannot be reached from inside?)")
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    try:
        data = json.loads(report.decode("utf-8") or "{}")
    except ValueError as exc:
        raise JailError("the lookup process inside the jail died without a report") from exc
    if "error" in data:
        raise JailError(f"cannot enter the jail {queue} as {user}: {data['error']}")
    return [Check(c["check"], bool(c["ok"]), str(c["detail"])) for c in data.get("checks", [])]


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str]) -> int:
    if len(argv) not in (3, 4) or argv[1] != "refresh" or argv[3:] not in ([], ["--reload"]):
        sys.stderr.write("usage: chroot-sync refresh QUEUE_DIRECTORY [--reload]\n")
        return 2
    queue = argv[2]
    try:
        result = refresh(queue)
    except (JailError, OSError) as exc:
        sys.stderr.write(f"chroot-sync: {queue}: {exc}\n")
        return 1
    for kind in ("created", "updated", "removed"):
        for path in getattr(result, kind):
            sys.stdout.write(f"chroot-sync: {kind} {posixpath.join(queue, path)}\n")
    for warning in result.warnings:
        sys.stderr.write(f"chroot-sync: warning: {warning}\n")
    if argv[3:] == ["--reload"] and result.changed and reload_master(queue):
        sys.stdout.write(f"chroot-sync: reloaded the master of {queue}\n")
    return 0
