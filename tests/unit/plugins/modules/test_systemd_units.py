# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""mailfleet.postfix.systemd_units on a fake host laid out under a temporary directory.

This machine does not run systemd as PID 1, so postconf, run_command (systemctl, dpkg-divert, postfix)
and master(8)'s pid check are replaced by a small fake that records every command and keeps the unit
states. The mapping, the installed files, the stored unit set, the instance .conf and the
postfix-script wrapper are real and are written under tmp_path only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import pytest
from ansible.module_utils import basic

from ansible_collections.mailfleet.postfix.plugins.module_utils import _masterless_generator, _masterless_host
from ansible_collections.mailfleet.postfix.plugins.modules import systemd_units as module
from ansible_collections.mailfleet.postfix.tests.unit.plugins.modules.postfix_env import (
    have_postfix_user,
    run_module,
    warnings_of,
)

ROOT = Path(__file__).resolve().parents[4]
DEBIAN = (ROOT / "tests/unit/plugins/module_utils/fixtures/debian-master.cf").read_text()
ORIGINAL_SCRIPT = "#!/bin/sh\n# Postfix's own postfix-script (fake)\n"
TARGET = "postfix-default.target"
HOLDER = "postfix-default-holder.service"
MASTER_UNIT = "postfix@-.service"  # what Debian runs master(8) of the primary instance with
# os.path.isdir and shutil.which are patched process-wide by the fixture; keep the real ones.
REAL_ISDIR = os.path.isdir
REAL_WHICH = shutil.which


pytestmark = pytest.mark.skipif(not have_postfix_user(), reason="mail_owner 'postfix' must exist")


class FakeHost:
    """systemctl, dpkg-divert and postfix(1) as far as the module sees them, with a log of every argv."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[list[str]] = []
        self.active: set[str] = set()
        self.loaded: set[str] = {MASTER_UNIT}
        self.diverted: set[str] = set()
        self.master_running = False
        self.list_units = ""  # systemctl list-units output (stale units)
        self.failed: set[str] = set()  # units in the failed state (list-units --state=failed, show)
        self.start_fails: set[str] = set()  # units that fail whenever the target starts them

    def run(self, argv: Sequence[str]) -> tuple[int, str, str]:
        args = list(argv)
        self.calls.append(args)
        if args[0] == "systemctl":
            return self._systemctl(args[1:])
        if args[0] == "dpkg-divert":
            return self._divert(args[1:])
        if args[1:5] == ["-I", "-S", "-m", "compileall"]:  # really compiled, by the interpreter running the tests
            done = subprocess.run([sys.executable, *args[1:]], capture_output=True, text=True, check=False)
            return done.returncode, done.stdout, done.stderr
        if os.path.basename(args[0]) == "postfix" and args[-1] in ("start", "stop"):
            self.master_running = args[-1] == "start"
            return 0, "", ""
        return 127, "", f"{args[0]}: not faked"

    def _systemctl(self, args: list[str]) -> tuple[int, str, str]:
        verb, unit = args[0], args[-1]
        if verb == "show" and "ControlGroup" in args:
            return 0, "\n", ""  # no cgroup: the instance's slice is empty
        if verb == "show" and "Id,LoadState,ActiveState,SubState,Result" in args:
            return 0, "\n".join(self._state(u) for u in args[args.index("--") + 1:]), ""
        if verb == "show":
            # postfix-default-master.service is the mailfleet instance_unit one: not installed here.
            load = "loaded" if unit in self.loaded or unit.startswith(("postfix-default.", "postfix-default-holder")) else "not-found"
            state = "active" if unit in self.active else "inactive"
            return 0, f"LoadState={load}\nActiveState={state}\nSubState={'running' if state == 'active' else 'dead'}\n", ""
        if verb in ("start", "restart"):
            for name in args[1:]:
                self.active.add(name)
                if name == TARGET:
                    self.active.add(HOLDER)  # the target pulls the status holder in
                    self.failed |= self.start_fails
                if name == MASTER_UNIT:
                    self.master_running = True
        if verb == "stop":
            for name in args[1:]:
                self.active.discard(name)
                if name == TARGET:
                    self.active.discard(HOLDER)
                if name == MASTER_UNIT:
                    self.master_running = False
        if verb == "list-units" and "--state=failed" in args:
            return 0, "".join(f"{u} not-found failed failed -\n" for u in sorted(self.failed)), ""
        if verb == "list-units":
            return 0, self.list_units, ""
        if verb == "reset-failed":
            self.failed -= set(args[2:])
        return 0, "", ""  # daemon-reload, reload

    def _state(self, unit: str) -> str:
        """systemctl show of one unit: generated units run while the target does, unless they failed."""
        if unit in self.failed:
            active, sub, result = "failed", "failed", "resources"
        elif TARGET in self.active and unit.startswith("postfix-default"):
            active, sub, result = "active", "listening" if unit.endswith(".socket") else "running", "success"
        else:
            active, sub, result = "inactive", "dead", "success"
        return f"Id={unit}\nLoadState=loaded\nActiveState={active}\nSubState={sub}\nResult={result}\n"

    def _divert(self, args: list[str]) -> tuple[int, str, str]:
        path = args[-1]
        assert path.startswith(f"{self.root}/"), f"dpkg-divert of a real file: {path}"
        if "--list" in args:
            return 0, (f"local diversion of {path} to {path}.distrib\n" if path in self.diverted else ""), ""
        if "--add" in args:  # --rename: Postfix's script moves aside
            os.rename(path, path + ".distrib")
            self.diverted.add(path)
        elif "--remove" in args:
            os.rename(path + ".distrib", path)
            self.diverted.discard(path)
        return 0, "", ""

    def mutating(self) -> list[list[str]]:
        """Commands that would change the host (everything but the read-only queries)."""
        return [c for c in self.calls if not (c[:2] in (["systemctl", "show"], ["systemctl", "list-units"])
                                              or c[:2] == ["dpkg-divert", "--list"])]

    def systemctl(self, verb: str) -> list[list[str]]:
        return [c[2:] for c in self.calls if c[:2] == ["systemctl", verb]]


class Env:
    def __init__(self, tmp_path: Path, host: FakeHost) -> None:
        self.tmp = tmp_path
        self.host = host
        self.root = tmp_path / "host"  # everything the module may write lives below here
        self.config = self.root / "etc/postfix"
        self.conf_dir = self.root / "etc/mailfleet-postfix/instances"
        self.state_dir = self.root / "var/lib/mailfleet-postfix"
        self.libexec = self.root / "usr/libexec/mailfleet-postfix"
        self.generators = self.root / "etc/systemd/system-generators"
        self.daemon_dir = self.root / "usr/lib/postfix/sbin"
        self.queue = self.root / "var/spool/postfix"
        for d in (self.config, self.daemon_dir, self.queue):
            d.mkdir(parents=True)
        (self.config / "main.cf").write_text("compatibility_level = 3.6\n")
        (self.config / "master.cf").write_text(DEBIAN)
        self.script = self.daemon_dir / "postfix-script"
        self.script.write_text(ORIGINAL_SCRIPT)
        self.script.chmod(0o755)
        self.facts = {
            "config_directory": str(self.config), "queue_directory": str(self.queue),
            "data_directory": str(self.root / "var/lib/postfix"), "daemon_directory": str(self.daemon_dir),
            "command_directory": str(self.root / "usr/sbin"), "mail_owner": "postfix", "setgid_group": "postdrop",
            "default_process_limit": "100", "inet_interfaces": "all", "inet_protocols": "all",
            "master_service_disable": "", "compatibility_level": "3.6", "multi_instance_name": "",
            "known_tcp_ports": "lmtp=24, smtp=25, smtps=submissions=465, submission=587",
            "virtual_mailbox_base": "", "maillog_file": "", "max_use": "100",
        }

    @property
    def conf_file(self) -> Path:
        return self.conf_dir / "default.conf"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "default" / "units.set"

    def postconf_output(self, config_dir: str, params: tuple[str, ...], postconf: str = "") -> str:
        # postconf -x prints exactly the parameters asked for; unset ones as "name =".
        assert config_dir == str(self.config)
        return "".join(f"{p} = {self.facts[p]}\n" if self.facts.get(p) else f"{p} =\n" for p in params)

    def run(self, *, check: bool = False, diff: bool = False, **args: Any) -> dict[str, Any]:
        params = {"config_dir": str(self.config), "libexec_dir": str(self.libexec),
                  "generator_dir": str(self.generators), "timeout": 2, **args}
        return run_module("systemd_units", params, tmp=self.tmp, check=check, diff=diff)

    def ok(self, **kw: Any) -> dict[str, Any]:
        out = self.run(**kw)
        assert not out.get("failed"), out["msg"]
        return out

    def snapshot(self) -> dict[str, tuple[str, bytes, int]]:
        """Every path under the fake host: kind, content (or link target) and mode."""
        tree: dict[str, tuple[str, bytes, int]] = {}
        for dirpath, dirs, names in os.walk(self.root):
            for name in dirs + names:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                if os.path.islink(path):
                    tree[path] = ("link", os.readlink(path).encode(), 0)
                elif os.path.isdir(path):
                    tree[path] = ("dir", b"", st.st_mode)
                else:
                    tree[path] = ("file", Path(path).read_bytes(), st.st_mode)
        return tree


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    host = FakeHost(tmp_path / "host")
    e = Env(tmp_path, host)
    # The module reads these constants at call time (_masterless_generator.CONF_DIR/STATE_DIR), so patching redirects it.
    monkeypatch.setattr(_masterless_generator, "CONF_DIR", str(e.conf_dir))
    monkeypatch.setattr(_masterless_generator, "STATE_DIR", str(e.state_dir))
    monkeypatch.setattr(_masterless_generator, "postconf_output", e.postconf_output)
    monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda self, args, **kw: host.run(args))
    # master(8)'s pid file check reads /proc: follow the fake instead.
    monkeypatch.setattr(_masterless_host, "master_pid", lambda q: 4242 if host.master_running else None)
    monkeypatch.setattr(module.os, "geteuid", lambda: 0)

    def isdir(path: Any) -> bool:
        return True if path == "/run/systemd/system" else REAL_ISDIR(path)

    def which(cmd: Any, *args: Any, **kwargs: Any) -> Optional[str]:
        return "/usr/bin/dpkg-divert" if cmd == "dpkg-divert" else REAL_WHICH(cmd, *args, **kwargs)

    monkeypatch.setattr(module.os.path, "isdir", isdir)
    monkeypatch.setattr(shutil, "which", which)
    yield e


# --------------------------------------------------------------------------- preconditions


def test_not_root_fails_and_writes_nothing(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module.os, "geteuid", lambda: 1000)
    before = env.snapshot()
    out = env.run()
    assert out["failed"] and "must run as root" in out["msg"]
    assert env.snapshot() == before and env.host.calls == []


def test_no_systemd_fails(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module.os.path, "isdir", lambda p: False if p == "/run/systemd/system" else REAL_ISDIR(p))
    before = env.snapshot()
    out = env.run()
    assert out["failed"] and "systemd is not the init system" in out["msg"]
    assert env.snapshot() == before and env.host.calls == []


# --------------------------------------------------------------------------- check mode


def test_check_mode_plans_everything_and_writes_nothing(env: Env) -> None:
    before = env.snapshot()
    out = env.ok(check=True, diff=True)
    assert out["changed"] and out["instance"] == "default" and out["target"] == TARGET
    assert env.snapshot() == before, "check mode wrote to the host"
    assert env.host.mutating() == []  # only systemctl show / dpkg-divert --list
    actions = out["actions"]
    written = {a.removeprefix("write ") for a in actions if a.startswith("write ")}
    assert {str(env.conf_file), str(env.state_file), str(env.generators / _masterless_host.GENERATOR_NAME),
            str(env.libexec / "bridge"), str(env.libexec / "mailfleet_postfix/_masterless_units.py")} <= written
    assert actions.index("systemctl daemon-reload") > max(actions.index(f"write {p}") for p in written)
    assert f"divert {env.script} (postfix start starts the target)" in actions
    assert actions[-1] == f"start {TARGET}"
    assert "postfix-default-smtp-inet.socket" in out["units"]
    # Everything is new, plus the boot-time link that enables the target.
    assert out["units_changed"]["added"] == sorted(out["units"] + [f"multi-user.target.wants/{TARGET}"])
    assert out["diff"]["before"] == ""
    assert "### postfix-default-smtp-inet.socket\n" in out["diff"]["after"]
    assert "ListenStream=" in out["diff"]["after"]
    # The plan is what a real run then does, and afterwards check mode predicts no change.
    assert env.ok()["actions"] == actions
    assert not env.ok(check=True)["changed"]


# --------------------------------------------------------------------------- real runs


def test_switch_installs_reloads_starts_and_is_idempotent(env: Env) -> None:
    out = env.ok()
    assert out["changed"] and out["mode"] == "systemd" and not out["switched"]
    lib = env.libexec / "mailfleet_postfix"
    assert (lib / "_masterless_units.py").read_text() == Path(module._masterless_units.__file__).read_text()
    assert "from mailfleet_postfix._masterless_bridge import main" in (env.libexec / "bridge").read_text()
    # The sandboxed holder and workers cannot write bytecode: the module compiled the library.
    assert f"compile {lib}" in out["actions"] and list((lib / "__pycache__").glob("_masterless_bridge.*.pyc"))
    launcher = env.generators / _masterless_host.GENERATOR_NAME
    assert launcher.read_text().startswith("#!/usr/bin/python3 -IS\n") and os.stat(launcher).st_mode & 0o777 == 0o755
    assert f"sys.path.insert(0, {str(env.libexec)!r})" in launcher.read_text()
    # The .conf enables the instance for the generator; the stored set is what the next daemon-reload keeps.
    conf = _masterless_generator.read_conf(str(env.conf_file))
    assert conf["config_directory"] == str(env.config) and conf["libexec_directory"] == str(env.libexec)
    stored = _masterless_generator.split_record(_masterless_generator.load_set(str(env.state_file)))[0]
    assert set(out["units"]) <= set(stored) and "postfix-default-smtp-inet.socket" in stored
    assert set(out["files_changed"]) >= {str(env.conf_file), str(launcher), str(lib / "_masterless_generator.py")}
    # postfix-script diverted once, the router written where Postfix's script was.
    adds = [c for c in env.host.calls if c[:1] == ["dpkg-divert"] and "--add" in c]
    assert adds == [["dpkg-divert", "--local", "--rename", "--divert", f"{env.script}.distrib", "--add", str(env.script)]]
    assert Path(f"{env.script}.distrib").read_text() == ORIGINAL_SCRIPT
    wrapper = env.script.read_text()
    assert f"for conf in {env.conf_dir}/*.conf" in wrapper and f"exec {env.script}.distrib" in wrapper
    assert os.stat(env.script).st_mode & 0o777 == 0o755
    assert env.host.systemctl("daemon-reload") == [[]]
    assert env.host.systemctl("start") == [[TARGET]]
    assert env.host.systemctl("stop") == []  # no master(8) was running
    assert out["actions"][-1] == f"start {TARGET}"

    # Unchanged input: nothing written, nothing reloaded or started.
    before = env.snapshot()
    env.host.calls.clear()
    again = env.ok()
    assert not again["changed"] and again["actions"] == [] and again["files_changed"] == []
    assert again["units_changed"] == {"added": [], "removed": [], "modified": []}
    assert env.snapshot() == before
    assert env.host.mutating() == []


def test_switch_stops_a_running_master_first(env: Env) -> None:
    env.host.active.add(MASTER_UNIT)
    env.host.master_running = True
    out = env.ok()
    assert out["switched"]
    stops, starts = env.host.systemctl("stop"), env.host.systemctl("start")
    assert stops == [[MASTER_UNIT]] and starts == [[TARGET]]
    # Never two supervisors on one queue: master is stopped before the target starts.
    order = [c for c in env.host.calls if c[:2] in (["systemctl", "stop"], ["systemctl", "start"])]
    assert order == [["systemctl", "stop", MASTER_UNIT], ["systemctl", "start", TARGET]]


def test_state_present_installs_without_starting_or_stopping(env: Env) -> None:
    env.host.master_running = True  # a running master stays untouched with state=present
    env.host.active.add(MASTER_UNIT)
    out = env.ok(state="present")
    assert out["changed"] and env.conf_file.exists() and env.state_file.exists()
    assert (env.generators / _masterless_host.GENERATOR_NAME).exists()
    assert env.host.systemctl("daemon-reload") == [[]]
    for verb in ("start", "stop", "restart", "reload"):
        assert env.host.systemctl(verb) == [], verb
    assert not any(os.path.basename(c[0]) == "postfix" for c in env.host.calls)
    assert not any(a.startswith(("start ", "stop ")) for a in out["actions"])


# --------------------------------------------------------------------------- master.cf the mapping refuses


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("frob      unix  -       -       y       -       -       frobnicate\n", "is not a Postfix daemon"),
        ("127.0.0.1:25 inet n     -       y       -       -       smtpd\n", "listens on port 25 like the entry at line 1"),
    ],
    ids=["unknown-daemon", "same-inet-port"],
)
def test_bad_master_cf_changes_nothing(env: Env, extra: str, reason: str) -> None:
    (env.config / "master.cf").write_text(DEBIAN + extra)
    line = len(DEBIAN.splitlines()) + 1
    before = env.snapshot()
    out = env.run()
    assert out["failed"], out
    assert out["msg"].startswith("nothing changed: ") and reason in out["msg"]
    assert f"master.cf line {line}:" in out["msg"] and out["line"] == line
    assert out["path"] == str(env.config / "master.cf")
    assert env.snapshot() == before and env.host.calls == []


# --------------------------------------------------------------------------- back to master(8)


def test_back_to_master_restores_postfix_script_when_last(env: Env) -> None:
    env.ok()
    env.host.calls.clear()
    out = env.ok(mode="master")
    assert out["changed"] and out["switched"] and out["mode"] == "master" and out["units"] == []
    assert not env.conf_file.exists() and not env.state_file.exists()
    assert str(env.conf_file) in out["files_changed"]
    assert env.host.systemctl("stop") == [[TARGET]]
    assert env.host.systemctl("daemon-reload") == [[]]
    # The last master-less instance is gone: Postfix's own script is back.
    assert [c for c in env.host.calls if "--remove" in c] == [
        ["dpkg-divert", "--local", "--rename", "--remove", str(env.script)]]
    assert env.script.read_text() == ORIGINAL_SCRIPT and not Path(f"{env.script}.distrib").exists()
    assert env.host.systemctl("start") == [[MASTER_UNIT]] and env.host.master_running
    order = [c[1:] for c in env.host.calls if c[:2] in (["systemctl", "stop"], ["systemctl", "start"])]
    assert order == [["stop", TARGET], ["start", MASTER_UNIT]]

    # Master already runs, nothing left to remove: a no-op.
    env.host.calls.clear()
    again = env.ok(mode="master")
    assert not again["changed"] and env.host.mutating() == []


def test_back_to_master_keeps_the_diversion_for_other_instances(env: Env) -> None:
    env.ok()
    (env.conf_dir / "edge.conf").write_text(_masterless_host.conf_text("/etc/postfix-edge", {}))
    wrapper = env.script.read_text()
    out = env.ok(mode="master")
    assert out["changed"] and not env.conf_file.exists() and (env.conf_dir / "edge.conf").exists()
    assert not any("--remove" in c for c in env.host.calls)
    assert env.script.read_text() == wrapper and Path(f"{env.script}.distrib").read_text() == ORIGINAL_SCRIPT
    assert not any(a.startswith("restore ") for a in out["actions"])
    assert env.host.master_running


def test_no_dpkg_divert_warns_and_still_switches(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda cmd, *a, **kw: None)
    out = env.ok()
    assert out["changed"] and env.script.read_text() == ORIGINAL_SCRIPT
    assert not any(c[0] == "dpkg-divert" for c in env.host.calls)
    assert any("no dpkg-divert" in w for w in warnings_of(out))
    assert env.host.systemctl("start") == [[TARGET]]


# --------------------------------------------------------------------------- master.cf edits while master-less


def test_changed_service_is_reloaded_gracefully(env: Env) -> None:
    env.ok()
    (env.config / "master.cf").write_text(DEBIAN.replace("syslog_name=postfix/$service_name", "syslog_name=postfix/relay2"))
    env.host.calls.clear()
    predicted = env.ok(check=True, diff=True)
    assert predicted["units_changed"] == {"added": [], "removed": [], "modified": ["postfix-default-relay-unix@.service"]}
    assert "postfix/relay2" in predicted["diff"]["after"] and "postfix/relay2" not in predicted["diff"]["before"]
    assert env.host.mutating() == []
    out = env.ok()
    assert out["actions"] == predicted["actions"]
    # A service change needs no rebinding: daemons retire gracefully, listeners stay.
    assert env.host.mutating() == [["systemctl", "daemon-reload"], ["systemctl", "start", TARGET],
                                   ["systemctl", "reload", HOLDER]]
    assert "postfix/relay2" in _masterless_generator.load_set(str(env.state_file))["postfix-default-relay-unix@.service"]


def test_new_listener_restarts_the_target(env: Env) -> None:
    env.ok()
    (env.config / "master.cf").write_text(DEBIAN + "2525      inet  n       -       y       -       -       smtpd\n")
    env.host.calls.clear()
    out = env.ok()
    assert "postfix-default-2525-inet.socket" in out["units_changed"]["added"]
    # systemd only binds a new listener when the sockets are restarted.
    assert env.host.mutating() == [["systemctl", "daemon-reload"], ["systemctl", "restart", TARGET]]


def test_removed_entry_stops_its_stale_units(env: Env) -> None:
    env.ok()
    (env.config / "master.cf").write_text("".join(line for line in DEBIAN.splitlines(keepends=True)
                                                  if not line.startswith("anvil ")))
    # After daemon-reload systemd still runs the units the generator no longer writes.
    env.host.list_units = "postfix-default-anvil-unix.socket not-found active listening anvil\n"
    env.host.failed = {"postfix-default-anvil-unix.service"}  # it failed while it stopped
    env.host.calls.clear()
    out = env.ok()
    assert out["units_changed"]["removed"] == ["postfix-default-anvil-unix.service", "postfix-default-anvil-unix.socket"]
    assert env.host.mutating() == [["systemctl", "daemon-reload"], ["systemctl", "stop", "postfix-default-anvil-unix.socket"],
                                   ["systemctl", "reset-failed", "--", "postfix-default-anvil-unix.service"],
                                   ["systemctl", "restart", TARGET]]
    assert env.host.failed == set()


def test_state_stopped_stops_the_target(env: Env) -> None:
    env.ok()
    env.host.calls.clear()
    out = env.ok(state="stopped")
    assert out["changed"] and out["actions"] == [f"stop {TARGET}"]
    assert env.host.mutating() == [["systemctl", "stop", TARGET]] and TARGET not in env.host.active
    assert env.conf_file.exists()  # still master-less: postfix start / boot bring it back
    env.host.calls.clear()
    assert not env.ok(state="stopped")["changed"] and env.host.mutating() == []


# --------------------------------------------------------------------------- verification and failed leftovers


def test_a_socket_that_does_not_listen_fails_the_switch(env: Env) -> None:
    env.host.start_fails = {"postfix-default-pickup-unix.socket"}
    out = env.run()
    assert out["failed"]
    assert "postfix-default-pickup-unix.socket (LoadState=loaded, ActiveState=failed, SubState=failed, " \
           "Result=resources)" in out["msg"]
    assert out["actions"][-1] == f"start {TARGET}"


def test_failed_units_are_reset_and_the_instance_started_again(env: Env) -> None:
    env.ok()
    # A unit failed meanwhile (and one of another unit set sharing the prefix): state=started repairs ours only.
    env.host.failed = {"postfix-default-pickup-unix-wakeup.service", "postfix-default-master.service"}
    env.host.calls.clear()
    out = env.ok()
    assert out["changed"]
    assert env.host.mutating() == [["systemctl", "reset-failed", "--", "postfix-default-pickup-unix-wakeup.service"],
                                   ["systemctl", "start", TARGET]]
    assert env.host.failed == {"postfix-default-master.service"}


def test_back_to_master_leaves_no_failed_units_of_the_instance(env: Env) -> None:
    env.ok()
    gone = ["postfix-default-pickup-fifo-wakeup.service", "postfix-default-pickup-fifo.socket"]
    env.host.failed = {*gone, "postfix-default-master.service", "unrelated.service"}
    env.host.calls.clear()
    out = env.ok(mode="master")
    assert f"reset-failed {' '.join(gone)}" in out["actions"]
    mutating = env.host.mutating()
    assert ["systemctl", "reset-failed", "--", *gone] in mutating
    # After the units are gone (daemon-reload), before master(8) starts.
    assert mutating.index(["systemctl", "daemon-reload"]) < mutating.index(["systemctl", "reset-failed", "--", *gone])
    assert mutating.index(["systemctl", "reset-failed", "--", *gone]) < mutating.index(["systemctl", "start", MASTER_UNIT])
    assert env.host.failed == {"postfix-default-master.service", "unrelated.service"}
    env.host.calls.clear()
    assert not env.ok(mode="master")["changed"] and env.host.mutating() == []
