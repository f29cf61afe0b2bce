"""The host layer: runner, postconf reader, systemctl readers, the one file writer, plans."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _host
from ansible_collections.mailfleet.postfix.plugins.module_utils._host import (
    Action,
    CommandError,
    FileSpec,
    HostError,
    LocalHost,
    Writer,
    differs,
    execute,
    observe,
    parse_postconf,
    postconf_x,
    write_atomic,
)


class FakeRun:
    """A Runner that answers from a table and records every argv."""

    def __init__(self, answers: dict[str, tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: Any) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        return self.answers.get(" ".join(argv), (0, "", ""))


# --------------------------------------------------------------------------- running


def test_local_run_captures_both_streams_and_the_exit_code() -> None:
    assert _host.local_run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]) == (3, "out\n", "err\n")


def test_local_run_hides_mail_config_and_sets_the_c_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_CONFIG", "/etc/postfix-other")
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    code, out, _err = _host.local_run(["/bin/sh", "-c", 'echo "${MAIL_CONFIG-unset} $LANG $LC_ALL"'])
    assert (code, out) == (0, "unset C C\n")


def test_local_run_reports_a_missing_program_as_127() -> None:
    code, _out, err = _host.local_run(["/nonexistent/postconf"])
    assert code == 127 and "/nonexistent/postconf" in err


def test_run_with_tty_gives_stderr_a_terminal() -> None:
    code, out = _host.run_with_tty(["/bin/sh", "-c", "test -t 2 && echo tty >&2; exit 4"], env=_host.c_env())
    assert code == 4 and out.strip() == "tty"


def test_checked_names_the_command_and_its_words() -> None:
    run = FakeRun({"systemctl start x.service": (5, "", "Unit x.service not found.\n")})
    with pytest.raises(CommandError, match=r"systemctl start x.service failed: Unit x.service not found\."):
        _host.systemctl(run, "start", "x.service")


# --------------------------------------------------------------------------- postconf


def test_parse_postconf_reads_values_and_empty_ones() -> None:
    assert parse_postconf("a = b c\nempty =\nwarning: ignored\nqueue_directory = /var/spool/postfix\n") == {
        "a": "b c", "empty": "", "queue_directory": "/var/spool/postfix"}


def test_postconf_x_asks_for_expanded_values_of_one_directory() -> None:
    run = FakeRun({"/usr/sbin/postconf -c /etc/postfix-edge -x mail_owner": (0, "mail_owner = postfix\n", "")})
    assert postconf_x(run, "/etc/postfix-edge", ["mail_owner"], postconf="/usr/sbin/postconf") == {
        "mail_owner": "postfix"}


def test_postconf_x_failure_says_which_directory() -> None:
    run = FakeRun({"postconf -c /nope -x": (1, "", "postconf: fatal: open /nope/main.cf: No such file\n")})
    with pytest.raises(CommandError, match=r"postconf -c /nope -x failed: postconf: fatal: open /nope/main.cf"):
        postconf_x(run, "/nope")


# --------------------------------------------------------------------------- systemctl


def test_unit_states_reads_every_unit_in_one_call() -> None:
    out = "Id=a.socket\nActiveState=active\nSubState=listening\n\nId=b.service\nActiveState=failed\n"
    run = FakeRun({"systemctl show -p Id,LoadState,ActiveState,SubState,Result -- a.socket b.service": (0, out, "")})
    states = _host.unit_states(run, ["a.socket", "b.service"])
    assert states["a.socket"]["SubState"] == "listening" and states["b.service"]["ActiveState"] == "failed"
    assert len(run.calls) == 1
    assert _host.unit_states(run, []) == {} and len(run.calls) == 1


def test_list_units_drops_the_failed_bullet() -> None:
    out = "\u25cf postfix-x-smtp-inet.socket loaded failed failed smtp\npostfix-x.target loaded active active x\n"
    run = FakeRun({"systemctl list-units --all --plain --no-legend -- postfix-*": (0, out, "")})
    assert _host.list_units(run, "postfix-*") == [["postfix-x-smtp-inet.socket", "loaded", "failed", "failed"],
                                                  ["postfix-x.target", "loaded", "active", "active"]]


def test_active_and_enabled() -> None:
    run = FakeRun({"systemctl show -p LoadState,ActiveState,SubState -- a.service": (0, "ActiveState=reloading\n", ""),
                   "systemctl is-enabled -- a.service": (0, "enabled\n", ""),
                   "systemctl is-enabled -- b.service": (1, "disabled\n", "")})
    assert _host.active(run, "a.service") and not _host.active(run, "b.service")
    assert _host.enabled(run, "a.service") and not _host.enabled(run, "b.service")


# --------------------------------------------------------------------------- writing


def test_write_atomic_sets_mode_before_anyone_can_read(tmp_path: Path) -> None:
    target = tmp_path / "unit.service"
    write_atomic(str(target), b"[Unit]\n", mode=0o640)
    assert target.read_bytes() == b"[Unit]\n" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["unit.service"]  # no temporary left


def test_write_atomic_replaces_a_leftover_temporary_and_never_a_directory(tmp_path: Path) -> None:
    (tmp_path / "set.new").write_text("torn")
    write_atomic(str(tmp_path / "set"), b"whole", temp="set.new")
    assert (tmp_path / "set").read_text() == "whole" and not (tmp_path / "set.new").exists()
    (tmp_path / "dir").mkdir()
    with pytest.raises(HostError, match="is a directory"):
        write_atomic(str(tmp_path / "dir"), b"x")
    assert (tmp_path / "dir").is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["dir", "set"]


def test_write_atomic_does_not_follow_a_planted_temporary_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / ".f.planted").symlink_to(victim)
    write_atomic(str(tmp_path / "f"), b"new", temp=".f.planted")
    assert victim.read_text() == "keep" and (tmp_path / "f").read_text() == "new"


def test_writer_check_mode_reports_the_same_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "a.conf"
    path.write_text("old\n")
    specs = [FileSpec(str(path), content="new\n"), FileSpec(str(tmp_path / "sub" / "b"), content="b\n", mode=0o755),
             FileSpec.mask(str(tmp_path / "postfix.service"))]
    dry = Writer(check_mode=True)
    assert dry.ensure_all(specs) == [s.path for s in specs]
    assert path.read_text() == "old\n" and not (tmp_path / "sub").exists()
    real = Writer()
    assert real.ensure_all(specs) == dry.changed
    assert real.diffs == dry.diffs
    assert dry.diffs[0] == {"before_header": str(path), "after_header": str(path), "before": "old\n", "after": "new\n"}
    assert path.read_text() == "new\n" and os.readlink(tmp_path / "postfix.service") == "/dev/null"
    assert stat.S_IMODE((tmp_path / "sub" / "b").stat().st_mode) == 0o755
    again = Writer()
    assert again.ensure_all(specs) == [] and again.diffs == []


def test_writer_keeps_mode_and_backs_up_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "main.cf"
    path.write_text("a = 1\n")
    path.chmod(0o600)
    writer = Writer(host=LocalHost(str(tmp_path)))
    assert writer.ensure(FileSpec(str(path), content="a = 2\n", mode=None), backup=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "a = 2\n"
    assert Path(writer.backups[str(path)]).read_text() == "a = 1\n"


def test_writer_refuses_to_replace_a_file_by_a_mask(tmp_path: Path) -> None:
    path = tmp_path / "postfix@-.service"
    path.write_text("[Service]\n")
    writer = Writer(refuse_replacing=("file",))
    with pytest.raises(HostError, match="exists and is not a link"):
        writer.ensure(FileSpec.mask(str(path)))
    assert path.read_text() == "[Service]\n" and writer.changed == []


def test_absent_only_if_link_removes_masks_and_nothing_else(tmp_path: Path) -> None:
    mask, real = tmp_path / "mask.service", tmp_path / "real.service"
    mask.symlink_to("/dev/null")
    real.write_text("[Unit]\n")
    writer = Writer()
    specs = [FileSpec(str(p), absent=True, only_if_link_to="/dev/null") for p in (mask, real)]
    assert writer.ensure_all(specs) == [str(mask)]
    assert not mask.is_symlink() and real.exists()


def test_differs_is_pure_over_the_observation(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"caf\xe9\n")  # Latin-1: kept as it is
    now = observe(str(path))
    assert not differs(FileSpec(str(path), content="caf\udce9\n", mode=None), now)
    assert differs(FileSpec(str(path), content="caf\udce9\n", mode=0o600 if now.mode != 0o600 else 0o644), now)


def test_directory_spec_sets_mode(tmp_path: Path) -> None:
    writer = Writer()
    assert writer.ensure(FileSpec(str(tmp_path / "d"), directory=True, mode=0o750))
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o750


# --------------------------------------------------------------------------- plans


def test_execute_runs_the_plan_only_outside_check_mode() -> None:
    calls: list[tuple[str, ...]] = []
    ops = {"systemctl": lambda *a: calls.append(a)}
    plan = [Action("systemctl daemon-reload", "systemctl", ("daemon-reload",)),
            Action("start postfix-x.target", "systemctl", ("start", "postfix-x.target"))]
    assert execute(plan, ops, check_mode=True) == [a.what for a in plan] and calls == []
    assert execute(plan, ops, check_mode=False) == [a.what for a in plan]
    assert calls == [("daemon-reload",), ("start", "postfix-x.target")]


def test_execute_names_the_actions_taken_before_a_failure() -> None:
    def fail(*_args: Any) -> None:
        raise CommandError("systemctl start failed")

    done: list[str] = []
    plan = [Action("one", "ok"), Action("two", "fail"), Action("three", "ok")]
    with pytest.raises(CommandError):
        execute(plan, {"ok": lambda: None, "fail": fail}, check_mode=False, done=done)
    assert done == ["one", "two"]


def test_the_module_imports_nothing_slow() -> None:
    """The generator imports the host layer at every boot and daemon-reload."""
    script = ("import sys\n"
              f"sys.path.insert(0, {str(Path(_host.__file__).parent)!r})\n"
              "import _host\n"
              "print(' '.join(sorted({'typing', 'dataclasses', 'subprocess', 'shutil', 'tempfile'} & set(sys.modules))))\n")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == []


def test_stream_lines_yields_lines_as_they_come() -> None:
    lines = _host.stream_lines([sys.executable, "-c", "import sys\nfor n in range(3): print(n, flush=True)"])
    assert next(lines) == "0\n"  # before the command ended
    assert list(lines) == ["1\n", "2\n"]


def test_stream_lines_names_a_failure_with_its_stderr() -> None:
    with pytest.raises(_host.CommandError, match="failed: no queue"):
        list(_host.stream_lines([sys.executable, "-c", "import sys; print('x'); sys.exit('no queue')"]))
    with pytest.raises(_host.CommandError, match="failed"):
        list(_host.stream_lines(["/nonexistent/postqueue", "-j"]))


def test_stream_lines_kills_a_command_that_does_not_end() -> None:
    with pytest.raises(_host.CommandError, match="failed: no end after 0.3 s"):
        list(_host.stream_lines([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.3))


def test_stream_lines_stops_the_command_when_the_reader_stops() -> None:
    lines = _host.stream_lines([sys.executable, "-c", "import time\nwhile True: print('x', flush=True)"])
    assert next(lines) == "x\n"
    lines.close()  # no hang, no error: the command is killed


def test_stream_lines_skips_a_line_longer_than_the_limit_without_holding_it() -> None:
    """A fake showq (the mail owner owns public/) could send one endless line."""
    code = ("import sys\nw = sys.stdout.buffer.write\nw(b'short\\n')\n"
            "for _ in range(64): w(b'x' * 4096)\nw(b'\\nok \\xff\\n')")
    lines = list(_host.stream_lines([sys.executable, "-c", code], line_max=10_000))
    assert lines == ["short\n", _host.OVERLONG_LINE, "ok \ufffd\n"]


def test_observe_reads_only_the_regular_file_it_saw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user's directory (a metrics directory): the file swapped for a link or a FIFO after
    lstat must not be read (a secret into the diff, or a hang)."""
    secret, path = tmp_path / "secret", tmp_path / "m.prom"
    secret.write_text("root only\n")
    path.write_text("old\n")
    seen = os.lstat(path)
    path.unlink()
    path.symlink_to(secret)
    assert _host._regular_content(str(path), seen) is None
    path.unlink()
    os.mkfifo(path)
    assert _host._regular_content(str(path), seen) is None  # no hang: O_NONBLOCK, and not the file seen
    path.unlink()
    path.write_text("x" * 10)
    monkeypatch.setattr(_host, "OBSERVED_SIZE_MAX", 5)
    assert _host.observe(str(path)).content is None and _host.differs(FileSpec(str(path), "x" * 10))


def test_removing_a_file_never_removes_a_directory_tree(tmp_path: Path) -> None:
    target = tmp_path / "default.conf"
    (target / "sub").mkdir(parents=True)
    (target / "sub" / "keep").write_text("x")
    with pytest.raises(HostError, match="is a directory; refusing to remove it"):
        Writer().ensure(FileSpec(str(target), absent=True))
    assert (target / "sub" / "keep").exists()


def test_a_link_replaced_by_a_file_keeps_its_target_s_mode(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_text("a = 1\n")
    real.chmod(0o640)
    link = tmp_path / "linked"
    link.symlink_to(real)
    Writer().ensure(FileSpec(str(link), content="a = 2\n", mode=None))
    assert not link.is_symlink() and stat.S_IMODE(link.stat().st_mode) == 0o640
