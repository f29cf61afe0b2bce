"""Jail copies keep their source's mode and owner: never more readable in the jail than on the host."""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _classic_jail_sync

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown)")


def _gid() -> int:
    """A group other than root's, as the postfix group would be on a mail host."""
    for name in ("postfix", "mail", "nogroup"):
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            continue
    pytest.skip("no non-root group on this host")


def _queue(tmp_path: Path) -> Path:
    queue = tmp_path / "spool"
    (queue / "etc").mkdir(parents=True)
    return queue


def _source(tmp_path: Path, mode: int, data: bytes = b"dummy map, no secret\n") -> Path:
    src = tmp_path / "src" / "dummy.cf"
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(data)
    os.chmod(src, mode)
    return src


@pytest.mark.parametrize("mode", [0o640, 0o600, 0o644, 0o400])
def test_want_takes_the_source_mode_and_owner(tmp_path: Path, mode: int) -> None:
    src = _source(tmp_path, mode)
    (want,) = _classic_jail_sync.wants_for([{"path": "etc/dummy.cf", "kind": "file", "source": str(src)}])
    st = src.stat()
    assert (want.mode, want.uid, want.gid) == (mode, st.st_uid, st.st_gid)


@pytest.mark.parametrize(("mode", "copy"), [(0o6755, 0o644), (0o1777, 0o666), (0o750, 0o640)])
def test_execute_and_special_bits_are_dropped(tmp_path: Path, mode: int, copy: int) -> None:
    src = _source(tmp_path, mode)
    (want,) = _classic_jail_sync.wants_for([{"path": "etc/dummy.cf", "kind": "file", "source": str(src)}])
    assert want.mode == copy


def test_passwd_keeps_the_source_mode(tmp_path: Path) -> None:
    src = _source(tmp_path, 0o640, b"postfix:secrethash:101:101::/var/spool/postfix:/usr/sbin/nologin\n")
    (want,) = _classic_jail_sync.wants_for([{"path": "etc/passwd", "kind": "passwd", "source": str(src)}])
    assert want.mode == 0o640 and b"secrethash" not in want.data


def test_a_source_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for source in (tmp_path, fifo):  # a FIFO must not block the sync
        with pytest.raises(_classic_jail_sync.JailError, match="not a regular file"):
            _classic_jail_sync.wants_for([{"path": "etc/dummy.cf", "kind": "file", "source": str(source)}])


@root_only
def test_a_0640_root_group_file_stays_0640_root_group_in_the_jail(tmp_path: Path) -> None:
    gid = _gid()
    src = _source(tmp_path, 0o640)
    os.chown(src, 0, gid)
    queue = _queue(tmp_path)
    items = [{"path": "etc/dummy.cf", "kind": "file", "source": str(src)}]
    first = _classic_jail_sync.sync(str(queue), items)
    assert first.created == ["etc/dummy.cf"]
    st = (queue / "etc/dummy.cf").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, gid)
    assert not _classic_jail_sync.sync(str(queue), items).changed
    # A jail copy that drifted (more open, other owner) is put back; so is a change at the source.
    os.chmod(queue / "etc/dummy.cf", 0o644)
    assert _classic_jail_sync.sync(str(queue), items).updated == ["etc/dummy.cf"]
    assert stat.S_IMODE((queue / "etc/dummy.cf").stat().st_mode) == 0o640
    os.chown(queue / "etc/dummy.cf", 0, 0)
    assert _classic_jail_sync.sync(str(queue), items).updated == ["etc/dummy.cf"]
    assert (queue / "etc/dummy.cf").stat().st_gid == gid
    os.chmod(src, 0o600)
    assert _classic_jail_sync.sync(str(queue), items).updated == ["etc/dummy.cf"]
    assert stat.S_IMODE((queue / "etc/dummy.cf").stat().st_mode) == 0o600
    # The manifest is this code's own file: root:root 0644.
    manifest = (queue / _classic_jail_sync.MANIFEST).stat()
    assert (stat.S_IMODE(manifest.st_mode), manifest.st_uid, manifest.st_gid) == (0o644, 0, 0)
