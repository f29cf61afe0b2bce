"""The kept unit sets (units.set): checksummed, written atomically and durably, refused when damaged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _masterless_generator
from ansible_collections.mailfleet.postfix.tests.unit.plugins.module_utils.test_masterless_generator import DEBIAN, Host, needs_postfix

FILES = {
    "postfix-default-smtp-inet@.service": "[Service]\nExecStart=/usr/lib/postfix/sbin/smtpd\nProtectHome=yes\n"
                                          "NoNewPrivileges=yes\nSystemCallFilter=@system-service\n",
    "multi-user.target.wants/postfix-default.target": "@link:postfix-default.target",
    "@inputs": "main.cf \udce9 latin-1 byte kept",
    "empty.slice": "",
}


def saved(tmp_path: Path) -> Path:
    path = tmp_path / "default" / "units.set"
    _masterless_generator.save_set(str(path), FILES)
    return path


def test_a_good_set_is_accepted(tmp_path: Path) -> None:
    path = saved(tmp_path)
    assert path.read_bytes().startswith(_masterless_generator.SET_HEADER.encode())
    assert _masterless_generator.load_set(str(path)) == FILES
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert not (tmp_path / "default" / "units.set.new").exists()


@pytest.mark.parametrize("cut", [1, 20, 60, 200])
def test_a_truncated_set_is_refused(tmp_path: Path, cut: int) -> None:
    """A torn write drops the end, where the last unit's hardening lines are."""
    path = saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    with pytest.raises(_masterless_generator.DamagedSetError, match="checksum"):
        _masterless_generator.load_set(str(path))


def test_a_truncation_at_a_record_boundary_is_refused(tmp_path: Path) -> None:
    """Dropping whole trailing records still parses as a set: only the checksum can tell."""
    path = saved(tmp_path)
    data = path.read_bytes()
    cut = data.rindex(b"[Service]")  # the start of the last record's content
    path.write_bytes(data[:data.rindex(b"\n", 0, data.rindex(b"\n", 0, cut)) + 1])
    with pytest.raises(_masterless_generator.DamagedSetError):
        _masterless_generator.load_set(str(path))


@pytest.mark.parametrize("where", [0, 40, 70, -10, -1])
def test_a_bit_flip_is_refused(tmp_path: Path, where: int) -> None:
    path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[where] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(_masterless_generator.DamagedSetError):
        _masterless_generator.load_set(str(path))


def test_a_set_of_an_earlier_release_is_refused(tmp_path: Path) -> None:
    """No checksum line: never used; the generator maps master.cf anew (see the generator tests)."""
    path = tmp_path / "units.set"
    path.write_text("".join(f"{k}\n{len(v)}\n{v}" for k, v in sorted({"a.service": "x"}.items())))
    with pytest.raises(_masterless_generator.DamagedSetError, match="earlier release"):
        _masterless_generator.load_set(str(path))


@pytest.mark.parametrize("body", ["a.service\n", "a.service\nxx\nabc", "a.service\n99\nshort", "a.service\n-1\n"])
def test_malformed_records_under_a_valid_checksum_are_refused(tmp_path: Path, body: str) -> None:
    path = tmp_path / "units.set"
    path.write_bytes((_masterless_generator.SET_HEADER + _masterless_generator._digest(body.encode()) + "\n" + body).encode())
    with pytest.raises(_masterless_generator.DamagedSetError, match="malformed"):
        _masterless_generator.load_set(str(path))


def test_save_is_atomic_a_crash_before_the_rename_keeps_the_old_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = saved(tmp_path)
    before = path.read_bytes()
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(_masterless_generator.os, "fsync", fsync)

    def crash(src: str, dst: str) -> None:
        assert Path(src).parent == Path(dst).parent  # same directory: rename is atomic
        assert _masterless_generator.load_set(src) == {"new.service": "y"}  # complete and synced before the rename
        assert synced, "the temporary file is fsync'ed before the rename"
        raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr(_masterless_generator.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        _masterless_generator.save_set(str(path), {"new.service": "y"})
    assert path.read_bytes() == before and _masterless_generator.load_set(str(path)) == FILES


def record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths fsync()ed from now on, in order (os is one module: the library's os.fsync is this one)."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def test_save_syncs_the_file_and_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = record_fsyncs(monkeypatch)
    path = saved(tmp_path)
    assert synced == [str(path) + ".new", str(path.parent)]


def test_a_stale_temporary_file_is_replaced_and_never_read(tmp_path: Path) -> None:
    path = saved(tmp_path)
    (path.parent / "units.set.new").write_text("half a set")
    assert _masterless_generator.load_set(str(path)) == FILES
    _masterless_generator.save_set(str(path), {"b.service": "z"})
    assert _masterless_generator.load_set(str(path)) == {"b.service": "z"}
    assert not (path.parent / "units.set.new").exists()


def test_save_does_not_follow_a_symlinked_temporary(tmp_path: Path) -> None:
    path = saved(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (path.parent / "units.set.new").symlink_to(victim)
    _masterless_generator.save_set(str(path), {"b.service": "z"})  # the link is replaced, never written through
    assert victim.read_text() == "keep" and _masterless_generator.load_set(str(path)) == {"b.service": "z"}
    assert not (path.parent / "units.set.new").exists()


def test_last_good_skips_a_damaged_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, state = tmp_path / "run", tmp_path / "state"
    _masterless_generator.save_set(str(state / "default" / "units.set"), FILES)
    (run / "default").mkdir(parents=True)
    (run / "default" / "units.set").write_bytes((state / "default" / "units.set").read_bytes()[:-30])
    got = _masterless_generator.last_good("default", str(run), str(state))
    assert got == (str(state / "default" / "units.set"), FILES)
    assert "not using" in capsys.readouterr().err


@needs_postfix
def test_a_damaged_set_is_never_used_by_the_generator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Broken master.cf and a damaged kept set: the failing unit, not half the old hardening."""
    host = Host(tmp_path)
    host.enable()
    assert host.generate() == 0
    kept = host.run / "default" / "units.set"
    kept.write_bytes(kept.read_bytes()[:-200])
    (host.etc / "master.cf").write_text(DEBIAN + "oops unix - - y - - frobnicate\n")
    assert host.generate() == 1
    err = capsys.readouterr().err
    assert "not using" in err and "not started" in err
    assert sorted(_masterless_generator.read_tree(str(host.out))) == [
        "multi-user.target.wants/postfix-default.target", "postfix-default-config-error.service", "postfix-default.target"]


@needs_postfix
def test_an_old_format_set_is_regenerated_not_an_outage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After an upgrade the kept sets have no checksum line: master.cf is mapped anew and the copy rewritten."""
    host = Host(tmp_path)
    host.enable()
    assert host.generate() == 0
    good = _masterless_generator.read_tree(str(host.out))
    kept = host.run / "default" / "units.set"
    kept.write_bytes(kept.read_bytes().split(b"\n", 1)[1])  # the format of earlier releases
    assert host.generate() == 0
    assert _masterless_generator.read_tree(str(host.out)) == good
    assert _masterless_generator.load_set(str(kept))  # rewritten with a checksum
    assert "earlier release" in capsys.readouterr().err


@needs_postfix
def test_one_instances_write_error_does_not_stop_another(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = Host(tmp_path)
    alpha = tmp_path / "etc-postfix-alpha"
    alpha.mkdir()
    (alpha / "master.cf").write_text(DEBIAN)
    facts = dict(host.facts, config_directory=str(alpha), multi_instance_name="postfix-alpha",
                 queue_directory="/var/spool/postfix-alpha", data_directory="/var/lib/postfix-alpha")
    (tmp_path / "facts-alpha").write_text("".join(f"{k} = {v}\n" for k, v in facts.items()))
    host.postconf.write_text(f'#!/bin/sh\nif [ "$2" = "{alpha}" ]; then cat {tmp_path / "facts-alpha"}; '
                             f'else cat {tmp_path / "facts"}; fi\n')
    (host.conf / "alpha.conf").write_text(f"config_directory = {alpha}\n")
    host.enable("default")
    # alpha's state directory cannot be written (a file where the directory should be; root ignores modes).
    host.run.mkdir()
    (host.run / "alpha").write_text("not a directory")
    host.generate()
    err = capsys.readouterr().err
    assert "instance alpha: cannot keep a copy" in err
    out = _masterless_generator.read_tree(str(host.out))
    for name in ("alpha", "default"):  # both instances get their units; only alpha lacks its kept copy
        assert f"postfix-{name}.target" in out and f"postfix-{name}-smtp-inet.socket" in out
    assert _masterless_generator.load_set(str(host.run / "default" / "units.set"))


@needs_postfix
def test_an_unwritable_copy_is_no_fallback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After a reboot the module's copy is current; failing to copy it to /run costs nothing but a log line."""
    host = Host(tmp_path)
    host.enable()
    assert host.generate() == 0
    good = _masterless_generator.read_tree(str(host.out))
    (host.state / "default").mkdir(parents=True)
    os.replace(host.run / "default" / "units.set", host.state / "default" / "units.set")
    (host.run / "default").rmdir()
    (host.run / "default").write_text("not a directory")
    assert host.generate() == 0
    assert _masterless_generator.read_tree(str(host.out)) == good
    assert "cannot keep a copy" in capsys.readouterr().err


@needs_postfix
def test_one_instances_output_error_does_not_stop_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    host = Host(tmp_path)
    host.enable("alpha")  # fails anyway (main.cf names the primary); its output fails too
    host.enable("default")
    real = _masterless_generator.write_tree

    def write_tree(root: str, files: dict[str, str]) -> None:
        if any("postfix-alpha" in rel for rel in files):
            raise OSError(28, "No space left on device")
        real(root, files)

    monkeypatch.setattr(_masterless_generator, "write_tree", write_tree)
    assert host.generate() == 1
    assert "instance alpha: cannot write its units" in capsys.readouterr().err
    assert "postfix-default-smtp-inet.socket" in _masterless_generator.read_tree(str(host.out))


def test_the_modules_copy_is_synced_before_success(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd_units writes /var/lib/.../units.set through the host layer's writer: file and directory reach the disk."""
    from ansible_collections.mailfleet.postfix.plugins.module_utils import _host

    synced = record_fsyncs(monkeypatch)
    target = tmp_path / "state" / "default" / "units.set"
    _host.Writer().ensure(_host.FileSpec(str(target), _masterless_generator.set_text(FILES)))
    assert _masterless_generator.load_set(str(target)) == FILES
    # The content under its temporary name next to the target, then the directory that holds the rename.
    assert synced[0].startswith(str(target.parent / ".units.set.")) and synced[-1] == str(target.parent)
