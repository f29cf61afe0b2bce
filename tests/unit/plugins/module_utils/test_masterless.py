"""Host side of the master-less mode: the installed payload, file state, planning helpers."""

from __future__ import annotations

import os
from pathlib import Path

from ansible_collections.mailfleet.postfix.plugins.module_utils import (
    _bridge,
    _generator,
    _mastercf,
    _masterless,
    _sandbox,
    _units,
)

PAYLOAD = {"_mastercf": _mastercf, "_units": _units, "_sandbox": _sandbox, "_bridge": _bridge, "_generator": _generator}


class FakeHost:
    def __init__(self, tmp: Path) -> None:
        self.tmpdir = str(tmp)

    def atomic_move(self, src: str, dest: str, unsafe_writes: bool = False, keep_dest_attrs: bool = True) -> None:
        os.replace(src, dest)


def test_installation_is_the_payload_itself(tmp_path: Path) -> None:
    files = _masterless.installation(PAYLOAD, libexec=str(tmp_path / "libexec"), generator_dir=str(tmp_path / "gen"),
                                     python="/usr/bin/python3")
    by_name = {os.path.relpath(f.path, tmp_path): f for f in files}
    assert by_name["libexec/mailfleet_postfix/_units.py"].content == Path(_units.__file__).read_text()
    assert by_name["libexec/bridge"].link == "mailfleet_postfix/_bridge.py"
    launcher = by_name["gen/mailfleet-postfix-generator"]
    assert launcher.mode == 0o755 and launcher.content.startswith("#!/usr/bin/python3 -IS\n")
    host = FakeHost(tmp_path)
    assert all(f.differs() for f in files)
    for f in files:
        _masterless.write_file(host, f)
    assert not any(f.differs() for f in files)
    # The installed tree works on its own: the generator imports the package, the bridge runs.
    assert os.access(launcher.path, os.X_OK)
    assert os.path.realpath(tmp_path / "libexec" / "bridge").endswith("mailfleet_postfix/_bridge.py")


def test_mode_change_is_a_difference(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    f = _masterless.File(str(tmp_path / "x"), "a\n", mode=0o644)
    _masterless.write_file(FakeHost(tmp_path / "work"), f)
    assert not f.differs()
    os.chmod(f.path, 0o600)
    assert f.differs()


def test_conf_text_and_summary() -> None:
    text = _masterless.conf_text("/etc/postfix-out", {"chroot": "postfix"})
    assert "config_directory = /etc/postfix-out\n" in text and "chroot = postfix\n" in text
    assert _masterless.summarize({"a": "1", "b": "2"}, {"b": "3", "c": "4"}) == {
        "added": ["c"], "removed": ["a"], "modified": ["b"]}


def test_master_pid_needs_a_running_master(tmp_path: Path) -> None:
    (tmp_path / "pid").mkdir()
    assert _masterless.master_pid(str(tmp_path)) is None
    (tmp_path / "pid" / "master.pid").write_text(f"{os.getpid():>32}\n")
    assert _masterless.master_pid(str(tmp_path)) is None  # this process is not master(8)


def test_stale_units_are_loaded_but_not_found() -> None:
    out = ("postfix-default-old-unix.socket not-found active listening old\n"
           "postfix-default-smtp-inet.socket loaded active listening smtp\n"
           "postfix-default-gone@1.service not-found inactive dead gone\n")
    assert _masterless.stale_units(lambda argv: (0, out, ""), "postfix-default") == ["postfix-default-old-unix.socket"]
