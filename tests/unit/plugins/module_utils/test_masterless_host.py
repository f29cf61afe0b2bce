"""Host side of the master-less mode: the installed payload, file state, planning helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import (
    _classic_jail_sync,
    _host,
    _masterless_host,
    _masterless_plan,
    _masterless_units,
)


def test_installation_is_the_payload_itself(tmp_path: Path) -> None:
    files = _masterless_host.installation(libexec=str(tmp_path / "libexec"), generator_dir=str(tmp_path / "gen"),
                                          python="/usr/bin/python3")
    by_name = {os.path.relpath(f.path, tmp_path): f for f in files}
    assert by_name["libexec/mailfleet_postfix/_masterless_units.py"].content == Path(_masterless_units.__file__).read_text()
    # The jail sync's module too: whichever module installs the package writes all of it.
    assert by_name["libexec/mailfleet_postfix/_classic_jail_sync.py"].content == Path(_classic_jail_sync.__file__).read_text()
    assert "from mailfleet_postfix._masterless_bridge import main" in (by_name["libexec/bridge"].content or "")
    launcher = by_name["gen/mailfleet-postfix-generator"]
    assert launcher.mode == 0o755 and (launcher.content or "").startswith("#!/usr/bin/python3 -IS\n")
    assert all(_host.differs(f) for f in files)
    _host.Writer().ensure_all(files)
    assert not any(_host.differs(f) for f in files)
    # The installed tree works on its own: the generator imports the package, the bridge runs.
    assert os.access(launcher.path, os.X_OK)
    usage = subprocess.run([sys.executable, "-I", "-S", str(tmp_path / "libexec" / "bridge")], capture_output=True,
                           text=True, check=False)
    assert usage.returncode == 2 and "usage: bridge {run|holder|" in usage.stderr


def test_mode_change_is_a_difference(tmp_path: Path) -> None:
    f = _host.FileSpec(str(tmp_path / "x"), "a\n", mode=0o644)
    _host.Writer().ensure(f)
    assert not _host.differs(f)
    os.chmod(f.path, 0o600)
    assert _host.differs(f)


def test_conf_text_and_summary() -> None:
    text = _masterless_host.conf_text("/etc/postfix-out", {"chroot": "postfix"})
    assert "config_directory = /etc/postfix-out\n" in text and "chroot = postfix\n" in text
    assert _masterless_plan.summarize({"a": "1", "b": "2"}, {"b": "3", "c": "4"}) == {
        "added": ["c"], "removed": ["a"], "modified": ["b"]}


def test_master_pid_needs_a_running_master(tmp_path: Path) -> None:
    (tmp_path / "pid").mkdir()
    assert _masterless_host.master_pid(str(tmp_path)) is None
    (tmp_path / "pid" / "master.pid").write_text(f"{os.getpid():>32}\n")
    assert _masterless_host.master_pid(str(tmp_path)) is None  # this process is not master(8)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a master(8) is root's")
def test_a_stale_pid_file_naming_someone_elses_master_is_no_master() -> None:
    """master.pid stays after master stops: the pid it names must be a root process called master
    working in this queue, not a local user's process of that name nor another instance's master."""
    with tempfile.TemporaryDirectory() as top:  # not pytest's tmp_path: nobody must reach it
        os.chmod(top, 0o755)
        _stale_pid_file(Path(top))


def _stale_pid_file(tmp_path: Path) -> None:
    queue, other = tmp_path / "queue", tmp_path / "other"
    for d in (queue / "pid", other):
        d.mkdir(parents=True)
    fake = tmp_path / "master"
    fake.write_bytes(Path("/bin/sleep").read_bytes())
    fake.chmod(0o755)

    def running(cwd: Path, user: int = 0) -> subprocess.Popen[bytes]:
        return subprocess.Popen([str(fake), "30"], cwd=cwd, user=user or None)

    procs = [running(other), running(queue, user=65534), running(queue)]
    try:
        for proc, expected in zip(procs, (None, None, procs[2].pid)):
            (queue / "pid" / "master.pid").write_text(f"{proc.pid:>32}\n")
            assert _masterless_host.master_pid(str(queue)) == expected
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_stale_units_are_loaded_but_not_found() -> None:
    out = ("postfix-default-old-unix.socket not-found active listening old\n"
           "postfix-default-smtp-inet.socket loaded active listening smtp\n"
           "postfix-default-gone@1.service not-found inactive dead gone\n")
    assert _masterless_host.stale_units(lambda argv: (0, out, ""), "postfix-default") == ["postfix-default-old-unix.socket"]


def _script_world(tmp_path: Path) -> tuple[_host.FileSpec, dict[str, str]]:
    """The postfix-script wrapper over a fake Postfix script and a fake systemctl that log their argv."""
    daemon_dir, conf_dir, bin_dir = tmp_path / "sbin", tmp_path / "instances", tmp_path / "bin"
    for d in (daemon_dir, conf_dir, bin_dir):
        d.mkdir()
    (conf_dir / "edge.conf").write_text(_masterless_host.conf_text("/etc/postfix-edge", {}))
    log = tmp_path / "calls"
    for name, path in (("real", daemon_dir / "postfix-script.distrib"), ("systemctl", bin_dir / "systemctl")):
        # systemctl is-active: inactive unless ACTIVE is set.
        path.write_text(f'#!/bin/sh\n[ "$1" = is-active ] && exit ${{ACTIVE:-3}}\necho "{name} $*" >> {log}\n')
        path.chmod(0o755)
    wrapper = _masterless_host.script_wrapper(str(daemon_dir), str(conf_dir))
    _host.Writer().ensure(wrapper)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log)}
    return wrapper, env


def test_postfix_start_of_a_masterless_instance_starts_its_target(tmp_path: Path) -> None:
    import subprocess

    wrapper, env = _script_world(tmp_path)
    assert os.stat(wrapper.path).st_mode & 0o777 == 0o755
    subprocess.run([wrapper.path, "start"], env={**env, "MAIL_CONFIG": "/etc/postfix-edge"}, check=True)
    subprocess.run([wrapper.path, "start"], env={**env, "MAIL_CONFIG": "/etc/postfix"}, check=True)
    subprocess.run([wrapper.path, "reload"], env={**env, "MAIL_CONFIG": "/etc/postfix-edge"}, check=True)
    fg = subprocess.run([wrapper.path, "start-fg"], env={**env, "MAIL_CONFIG": "/etc/postfix-edge"}, check=False,
                        capture_output=True, text=True)
    assert fg.returncode == 1 and "systemctl start postfix-edge.target" in fg.stderr
    # Running already: Postfix's own answer, and nothing started.
    running = subprocess.run([wrapper.path, "start"], env={**env, "MAIL_CONFIG": "/etc/postfix-edge", "ACTIVE": "0"},
                             check=False, capture_output=True, text=True)
    assert running.returncode == 1 and "already running" in running.stderr
    assert Path(env["LOG"]).read_text().splitlines() == [
        "systemctl start postfix-edge.target",  # master-less: its target, never master(8)
        "real start",  # any other instance: Postfix's own script
        "real reload",
    ]


def test_postfix_script_is_diverted_once(tmp_path: Path) -> None:
    wrapper, _env = _script_world(tmp_path)
    calls: list[list[str]] = []
    listed = {"out": ""}

    def run(args: Sequence[str]) -> tuple[int, str, str]:
        argv = list(args)
        calls.append(argv)
        if "--list" in argv:
            return 0, listed["out"], ""
        listed["out"] = f"local diversion of {wrapper.path} to {wrapper.path}.distrib\n"
        return 0, "", ""

    _masterless_host.divert_script(run, wrapper)
    _masterless_host.divert_script(run, wrapper)
    adds = [c for c in calls if "--add" in c]
    assert adds == [["dpkg-divert", "--local", "--rename", "--divert", wrapper.path + ".distrib", "--add", wrapper.path]]
    _masterless_host.undivert_script(run, wrapper.path)
    assert not os.path.exists(wrapper.path)  # dpkg-divert --rename then moves Postfix's script back
    assert calls[-1] == ["dpkg-divert", "--local", "--rename", "--remove", wrapper.path]


def test_own_units_are_exactly_the_generated_ones() -> None:
    assert _masterless_host.UNIT_SLUGS == tuple(dict.fromkeys(_masterless_units.TYPE_SLUG.values()))
    own = ["postfix-default.target", "postfix-default.slice", "postfix-default-holder.socket",
           "postfix-default-holder.service", "postfix-default-config-error.service", "postfix-default-pickup-fifo.socket",
           "postfix-default-pickup-unix-wakeup.service", "postfix-default-pickup-unix-wakeup.timer",
           "postfix-default-smtp-inet@3.service", "postfix-default-showq-unix@2-1234-0.service",
           "postfix-default-master-unix.socket", "postfix-default-foo\\x2dbar-pass.socket"]
    other = ["postfix-default-master.service", "postfix-default-jail.service", "postfix-default-jail.path",
             "postfix@-.service", "postfix.service", "postfix-out.target", "postfix-default\\x2dout-smtp-inet.socket",
             "postfix-defaults-smtp-inet.socket", "postfix-default-unix.socket", "postfix-default-smtp-inet.mount",
             "postfix-default-holder.timer"]
    assert [u for u in own if not _masterless_host.own_unit("postfix-default", u)] == []
    assert [u for u in other if _masterless_host.own_unit("postfix-default", u)] == []


def test_failed_units_and_reset_touch_only_the_instance() -> None:
    calls: list[list[str]] = []
    listing = ("\u25cf postfix-default-pickup-unix.socket not-found failed failed pickup-unix.socket\n"
               "postfix-default-master.service loaded failed failed Postfix (instance_unit)\n"
               "postfix-default\\x2dout-qmgr-unix.service loaded failed failed other instance\n"
               "postfix-default-pickup-unix-wakeup.service not-found failed failed wakeup\n")

    def run(argv: Sequence[str]) -> tuple[int, str, str]:
        calls.append(list(argv))
        return 0, listing, ""

    failed = _masterless_host.failed_units(run, "postfix-default")
    assert failed == ["postfix-default-pickup-unix.socket", "postfix-default-pickup-unix-wakeup.service"]
    assert "--state=failed" in calls[0]
    _masterless_host.reset_failed(run, failed)
    assert calls[-1] == ["systemctl", "reset-failed", "--", *failed]
    calls.clear()
    _masterless_host.reset_failed(run, [])
    assert calls == []


def _show(states: dict[str, tuple[str, str, str]], failed: Sequence[str] = ()) -> _host.Runner:
    def run(argv: Sequence[str]) -> tuple[int, str, str]:
        if argv[:2] == ["systemctl", "list-units"]:
            return 0, "".join(f"{u} not-found failed failed -\n" for u in failed), ""
        units = list(argv)[list(argv).index("--") + 1:]
        blocks = []
        for u in units:
            active, sub, result = states.get(u, ("inactive", "dead", "success"))
            blocks.append(f"Id={u}\nLoadState=loaded\nActiveState={active}\nSubState={sub}\nResult={result}\n")
        return 0, "\n".join(blocks), ""
    return run


def test_verification_names_a_socket_that_does_not_listen() -> None:
    units = ["postfix-default-pickup-fifo.socket", "postfix-default-qmgr-unix.socket",
             "postfix-default-pickup-fifo.service", "postfix-default.target"]
    good = {"postfix-default-pickup-fifo.socket": ("active", "listening", "success"),
            "postfix-default-qmgr-unix.socket": ("active", "running", "success")}
    _masterless_host.verify_running(_show(good), units, "postfix-default", timeout=0)
    bad = {**good, "postfix-default-pickup-fifo.socket": ("failed", "failed", "resources")}
    failed = ["postfix-default-pickup-fifo-wakeup.service"]
    with pytest.raises(_masterless_host.MasterlessError) as err:
        _masterless_host.verify_running(_show(bad, failed), units, "postfix-default", timeout=0)
    msg = str(err.value)
    assert ("postfix-default-pickup-fifo.socket (LoadState=loaded, ActiveState=failed, SubState=failed, "
            "Result=resources)") in msg
    assert "postfix-default-pickup-fifo-wakeup.service (LoadState=loaded, ActiveState=inactive" in msg
    assert "qmgr" not in msg
