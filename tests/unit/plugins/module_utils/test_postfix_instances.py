"""Postfix instances: the pure helpers, then create/import/remove against the real Postfix commands.

The integration tests build a throwaway primary instance in a temp directory (its own queue and data
directories) and point the library at it; nothing under /etc/postfix or /var/spool is touched, and no
daemon is started.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any, Optional

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _postfix_instances as lib
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_maincf import MainCf
from ansible_collections.mailfleet.postfix.tests.unit.plugins.modules.postfix_env import make_primary

HAVE_POSTFIX = shutil.which("postconf", path="/usr/sbin:/sbin:" + os.environ.get("PATH", "")) is not None
needs_postfix = pytest.mark.skipif(not HAVE_POSTFIX or os.geteuid() != 0, reason="needs root and Postfix installed")


# --------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize("name", ["postfix-edge", "postfix-out2", "postfix-a.b_c-d"])
def test_valid_names(name: str) -> None:
    lib.validate_name(name)


@pytest.mark.parametrize("name", ["edge", "postfix-", "postfix", "postfix-/x", "postfix-a b", "Postfix-x", "postfix--x"[:8]])
def test_invalid_names_say_what_is_allowed(name: str) -> None:
    with pytest.raises(lib.InstanceError, match="postfix-NAME"):
        lib.validate_name(name)


def test_primary_names() -> None:
    assert lib.Request(name="-").primary
    assert lib.Request(name="").primary
    assert not lib.Request(name="postfix-x").primary


@pytest.mark.parametrize(
    ("primary", "expected"),
    [("/etc/postfix", "/etc/postfix-edge"), ("/var/spool/postfix/", "/var/spool/postfix-edge"), ("/srv/pf", "/srv/postfix-edge")],
)
def test_default_path_replaces_last_component(primary: str, expected: str) -> None:
    assert lib.default_path(primary, "postfix-edge") == expected


@pytest.mark.parametrize(("value", "items"), [("", []), ("/a, /b  /c", ["/a", "/b", "/c"]), (" /a,\n /b ", ["/a", "/b"])])
def test_split_list(value: str, items: list[str]) -> None:
    assert lib.split_list(value) == items


PROTO = """# proto
command_directory = /usr/sbin

mail_owner = postfix
#  comment
setgid_group =
sendmail_path =
other = 1
"""


def test_new_main_cf_clones_explicit_shared_parameters_and_comments_out_the_rest() -> None:
    primary = "mail_owner = mailer\nsetgid_group = maildrop\nmyhostname = x\n"
    text = lib.new_main_cf(PROTO, primary, {"queue_directory": "/q", "multi_instance_name": "postfix-e"})
    params = MainCf.parse(text).parameters()
    assert params["mail_owner"] == "mailer"
    assert params["setgid_group"] == "maildrop"
    assert "command_directory" not in params and "#command_directory = /usr/sbin\n" in text
    assert "sendmail_path" not in params and "#sendmail_path =\n" in text
    assert "myhostname" not in params  # only shared install parameters are cloned
    assert params["other"] == "1" and "#  comment\n" in text
    assert text.endswith("queue_directory = /q\nmulti_instance_name = postfix-e\n")


def test_comment_out_every_definition() -> None:
    doc = MainCf.parse("a = 1\nb = 2\na = 3\n  continued\n")
    assert lib.comment_out(doc, "a")
    assert doc.render() == "#a = 1\nb = 2\n#a = 3\n#  continued\n"
    assert not lib.comment_out(doc, "a")


def _primary(**kw: Any) -> lib.Primary:
    base: dict[str, Any] = {"config_directory": "/etc/postfix", "queue_directory": "/var/spool/postfix",
                            "data_directory": "/var/lib/postfix", "meta_directory": "/etc/postfix", "directories": (),
                            "alternates": (), "wrapper": "", "enable": "no"}
    base.update(kw)
    return lib.Primary(**base)


def test_register_adds_directory_and_inits_wrapper() -> None:
    got = lib.register_settings(_primary(directories=("/etc/postfix-a",)), "/etc/postfix-b", add=True, wrapper="init")
    assert got == {
        "multi_instance_directories": "/etc/postfix-a /etc/postfix-b",
        "multi_instance_wrapper": lib.POSTMULTI_WRAPPER,
        "multi_instance_enable": "yes",
    }


def test_register_keeps_a_foreign_wrapper_and_is_idempotent() -> None:
    primary = _primary(directories=("/etc/postfix-b",), wrapper="/usr/libexec/x/route --", enable="yes")
    assert lib.register_settings(primary, "/etc/postfix-b", add=True, wrapper="init") == {}


def test_register_keep_leaves_wrapper_and_enable_alone() -> None:
    got = lib.register_settings(_primary(), "/etc/postfix-b", add=True, wrapper="keep")
    assert got == {"multi_instance_directories": "/etc/postfix-b"}


def test_register_moves_out_of_alternate_config_directories() -> None:
    primary = _primary(alternates=("/etc/postfix-b", "/etc/other"), wrapper="w", enable="yes")
    got = lib.register_settings(primary, "/etc/postfix-b", add=True, wrapper="init")
    assert got == {"multi_instance_directories": "/etc/postfix-b", "alternate_config_directories": "/etc/other"}


def test_deregister_only_removes_the_directory() -> None:
    primary = _primary(directories=("/etc/postfix-a", "/etc/postfix-b"), wrapper="w", enable="yes")
    assert lib.register_settings(primary, "/etc/postfix-a", add=False, wrapper="init") == {
        "multi_instance_directories": "/etc/postfix-b"}
    assert lib.register_settings(primary, "/etc/postfix-c", add=False, wrapper="init") == {}


POSTFIX_FILES = """# comment
$config_directory:d:root:-:755:u
$data_directory:d:$mail_owner:-:700:uc
$queue_directory:d:root:-:755:uc
$queue_directory/active:d:$mail_owner:-:700:ucr
$queue_directory/maildrop:d:$mail_owner:$setgid_group:730:uc
$command_directory/postqueue:f:root:$setgid_group:2755:u
$daemon_directory:d:root:-:755:u
"""

VALUES = {"config_directory": "/c", "queue_directory": "/q", "data_directory": "/d", "mail_owner": "postfix",
          "setgid_group": "postdrop"}


def test_permission_rules_cover_instance_directories_only() -> None:
    rules = lib.permission_rules(POSTFIX_FILES, VALUES)
    assert [r.path for r in rules] == ["/c", "/d", "/q", "/q/active", "/q/maildrop"]
    assert rules[4] == lib.PathRule("/q/maildrop", "postfix", "postdrop", 0o730)
    assert rules[0].group is None


def _fake_stat(mode: int, uid: int = 0, gid: int = 0) -> os.stat_result:
    return os.stat_result((stat.S_IFDIR | mode, 0, 0, 2, uid, gid, 0, 0, 0, 0))


def test_permission_drift_names_each_problem() -> None:
    rules = [lib.PathRule("/q", "root", None, 0o755), lib.PathRule("/q/x", "root", "root", 0o700),
             lib.PathRule("/q/gone", None, None, 0o700), lib.PathRule("/q/u", "no-such-user-mailfleet", None, 0o700)]
    table = {"/q": _fake_stat(0o755), "/q/x": _fake_stat(0o750, gid=4242), "/q/u": _fake_stat(0o700)}
    drift = lib.permission_drift(rules, lookup=table.get)
    assert drift == ["/q/x: group is not root", "/q/x: mode 0750, Postfix wants 0700", "/q/gone: missing",
                     "/q/u: owner is not no-such-user-mailfleet"]


def test_count_queued_counts_messages_not_logs(tmp_path: Path) -> None:
    for rel in ("deferred/A/ABC", "deferred/B/DEF", "hold/X", "maildrop/M", "bounce/LOG", "defer/LOG", "pid/master.pid"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert lib.count_queued(str(tmp_path)) == 4
    assert lib.count_queued(str(tmp_path / "nowhere")) == 0


def test_processes_in_reads_cwd_and_root(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    queue = tmp_path / "spool" / "postfix-e"
    queue.mkdir(parents=True)
    for pid, link, target in ((10, "cwd", queue), (11, "root", queue), (12, "cwd", queue / "x"), (13, "cwd", tmp_path),
                              (14, "cwd", Path(str(queue) + "2"))):
        (proc / str(pid)).mkdir(parents=True, exist_ok=True)
        (proc / str(pid) / link).symlink_to(target)
    (proc / "self").mkdir()
    assert lib.processes_in(str(queue), proc=str(proc)) == [10, 11, 12]


def test_stage_noise_is_dropped_but_real_warnings_kept() -> None:
    noise = "postfix: warning: /etc/postfix-e/main.cf, line 9: overriding earlier entry: queue_directory=/var/spool/x"
    real = "postconf: warning: /etc/postfix-e/main.cf: unused parameter: foo=bar"
    assert lib.quiet([noise, real]) == [real]


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("25", "*", "25"), ("smtp", "*", "25"), ("10.0.0.5:25", "10.0.0.5", "25"), ("[::1]:submission", "::1", "587"),
     ("0.0.0.0:2525", "*", "2525"), ("mx.example:smtps", "mx.example", "465")],
)
def test_parse_listener(text: str, host: str, port: str) -> None:
    got = lib.parse_listener(text)
    assert (got.host, got.port) == (host, port)


def test_listener_without_port_is_refused() -> None:
    with pytest.raises(lib.InstanceError, match="has no port"):
        lib.parse_listener("10.0.0.5:")


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [("10.0.0.5:25", "10.0.0.5:25", True), ("10.0.0.5:25", "127.0.0.1:25", False), ("25", "127.0.0.1:25", True),
     ("10.0.0.5:25", "10.0.0.5:587", False), ("smtp", "0.0.0.0:25", True)],
)
def test_listener_overlap(a: str, b: str, overlap: bool) -> None:
    assert lib.parse_listener(a).overlaps(lib.parse_listener(b)) is overlap


MASTER = """smtp      inet  n       -       y       -       -       smtpd
127.0.0.1:10025 inet n  -       n       -       -       smtpd
#submission inet n       -       y       -       -       smtpd
[::1]:2525 inet n       -       n       -       -       smtpd
pickup    unix  n       -       y       60      1       pickup
"""


def test_configured_listeners_follow_inet_interfaces_and_disable() -> None:
    got = lib.configured_listeners(MASTER, {"inet_interfaces": "loopback-only"}, origin="x")
    assert [str(x) for x in got] == ["127.0.0.1:25", "[::1]:25", "127.0.0.1:10025", "[::1]:2525"]
    assert "'smtp inet' (line 1)" in got[0].origin
    assert lib.configured_listeners(MASTER, {"inet_interfaces": "all", "master_service_disable": "inet"}, origin="x") == []
    only = lib.configured_listeners(MASTER, {"inet_interfaces": "10.0.0.5, 10.0.0.6", "master_service_disable": "smtp.inet"},
                                    origin="x")
    assert [str(x) for x in only] == ["127.0.0.1:10025", "[::1]:2525"]


def test_conflicts_name_both_sides() -> None:
    theirs = lib.configured_listeners(MASTER, {"inet_interfaces": "all"}, origin="instance -: /etc/postfix/master.cf")
    clash = lib.conflicts([lib.parse_listener("10.0.0.5:25")], theirs)
    assert clash == ["10.0.0.5:25 overlaps *:25 from instance -: /etc/postfix/master.cf 'smtp inet' (line 1)"]


# --------------------------------------------------------------------------- against real Postfix


class Tree:
    """A throwaway primary instance: etc/postfix, spool/postfix, lib/postfix under a temp dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.etc = root / "etc"
        self.primary = make_primary(root)
        self.postfix = lib.Postfix(primary=str(self.primary))

    def run(self, name: str = "postfix-edge", *, check_mode: bool = False, **kw: Any) -> lib.Result:
        return lib.run(lib.Request(name=name, **kw), postfix=self.postfix, check_mode=check_mode,
                       proc=str(self.root / "no-proc"))

    def param(self, config_dir: str, name: str) -> str:
        return subprocess.run(["postconf", "-c", config_dir, "-h", name], capture_output=True, text=True,
                              check=True).stdout.strip()

    def snapshot(self) -> dict[str, Optional[bytes]]:
        out: dict[str, Optional[bytes]] = {}
        for path in sorted(self.root.rglob("*")):
            out[str(path)] = path.read_bytes() if path.is_file() else None
        return out


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


@needs_postfix
def test_create_registers_and_sets_postfix_permissions(tree: Tree) -> None:
    result = tree.run(master_service_disable="")
    config = str(tree.etc / "postfix-edge")
    queue = str(tree.root / "spool" / "postfix-edge")
    assert result.changed and result.created and result.registered
    assert (result.config_directory, result.queue_directory) == (config, queue)
    assert result.data_directory == str(tree.root / "lib" / "postfix-edge")
    assert tree.param(str(tree.primary), "multi_instance_directories") == config
    assert tree.param(str(tree.primary), "multi_instance_wrapper") == lib.POSTMULTI_WRAPPER
    assert tree.param(config, "multi_instance_name") == "postfix-edge"
    assert tree.param(config, "multi_instance_enable") == "yes"
    assert tree.param(config, "queue_directory") == queue
    assert tree.param(config, "master_service_disable") == ""
    assert tree.param(config, "authorized_submit_users") == ""
    maildrop = os.stat(os.path.join(queue, "maildrop"))
    assert stat.S_IMODE(maildrop.st_mode) == 0o730
    assert stat.S_IMODE(os.stat(result.data_directory).st_mode) == 0o700
    assert subprocess.run(["postfix", "-c", config, "check"], capture_output=True, check=False).returncode == 0
    assert (tree.etc / "postfix-edge" / "master.cf").read_text() == (tree.root / "meta" / "master.cf.proto").read_text()


@needs_postfix
def test_second_run_changes_nothing(tree: Tree) -> None:
    tree.run()
    before = tree.snapshot()
    again = tree.run()
    assert not again.changed and again.actions == [] and again.files == []
    assert tree.snapshot() == before


@needs_postfix
def test_check_mode_predicts_the_real_run_and_writes_nothing(tree: Tree) -> None:
    before = tree.snapshot()
    predicted = tree.run(check_mode=True, group="mta")
    assert tree.snapshot() == before
    real = tree.run(group="mta")
    assert predicted.actions == real.actions
    assert [(f.path, f.before, f.after) for f in predicted.files] == [(f.path, f.before, f.after) for f in real.files]


@needs_postfix
def test_new_instance_listens_nowhere_unless_asked(tree: Tree) -> None:
    result = tree.run()
    assert tree.param(result.config_directory, "master_service_disable") == "inet"
    # An existing instance keeps whatever it has when the option is unset.
    subprocess.run(["postconf", "-c", result.config_directory, "-e", "master_service_disable=unix"], check=True)
    assert not tree.run().changed
    cleared = tree.run(master_service_disable="")
    assert cleared.changed and tree.param(result.config_directory, "master_service_disable") == ""


@needs_postfix
def test_update_changes_only_instance_parameters(tree: Tree) -> None:
    result = tree.run()
    main_cf = Path(result.config_directory) / "main.cf"
    text = main_cf.read_text()
    changed = tree.run(enabled=False, group="edge")
    assert changed.actions == [f"set multi_instance_enable, multi_instance_group in {main_cf}"]
    new = main_cf.read_text()
    assert new.replace("multi_instance_enable = no", "multi_instance_enable = yes") == text + "multi_instance_group = edge\n"


@needs_postfix
def test_import_of_a_primary_copy_gets_its_own_queue(tree: Tree) -> None:
    config = tree.etc / "postfix-copy"
    shutil.copytree(tree.primary, config)
    result = tree.run("postfix-copy", master_service_disable="")
    assert not result.created
    assert result.queue_directory == str(tree.root / "spool" / "postfix-copy")
    assert tree.param(str(config), "queue_directory") == result.queue_directory
    assert os.path.isdir(os.path.join(result.queue_directory, "maildrop"))


@needs_postfix
def test_permission_drift_is_repaired(tree: Tree) -> None:
    result = tree.run()
    active = os.path.join(result.queue_directory, "active")
    os.chmod(active, 0o755)
    shutil.rmtree(os.path.join(result.queue_directory, "flush"))
    fixed = tree.run()
    assert fixed.changed and fixed.actions[0].startswith(f"postfix -c {result.config_directory} set-permissions")
    assert stat.S_IMODE(os.stat(active).st_mode) == 0o700
    assert os.path.isdir(os.path.join(result.queue_directory, "flush"))
    assert not tree.run().changed


@needs_postfix
def test_two_instances_and_conflicts(tree: Tree) -> None:
    edge = tree.run("postfix-edge")
    tree.run("postfix-out")
    dirs = tree.param(str(tree.primary), "multi_instance_directories").split()
    assert dirs == [edge.config_directory, str(tree.etc / "postfix-out")]
    with pytest.raises(lib.InstanceError, match="belongs to instance postfix-edge"):
        tree.run("postfix-third", queue_directory=edge.queue_directory)
    with pytest.raises(lib.InstanceError, match="belongs to the primary"):
        tree.run("postfix-fourth", queue_directory=str(tree.root / "spool" / "postfix"))
    with pytest.raises(lib.InstanceError, match="registered with config directory"):
        tree.run("postfix-edge", config_directory=str(tree.etc / "elsewhere"))
    with pytest.raises(lib.InstanceError, match="registered as instance 'postfix-edge'"):
        tree.run("postfix-other", config_directory=edge.config_directory)
    with pytest.raises(lib.InstanceError, match="primary instance's config directory"):
        tree.run("postfix-p", config_directory=str(tree.primary))


@needs_postfix
def test_listen_conflict_is_refused_before_any_change(tree: Tree) -> None:
    # The primary listens on smtp at every address.
    subprocess.run(["postconf", "-c", str(tree.primary), "-e", "inet_interfaces=all"], check=True)
    before = tree.snapshot()
    with pytest.raises(lib.InstanceError, match=r"would listen where another instance .*10\.9\.9\.9:25 overlaps \*:25"):
        tree.run(master_service_disable="", listen=["10.9.9.9:25"])
    assert tree.snapshot() == before
    predicted = tree.run(master_service_disable="", listen=["10.9.9.9:25"], check_mode=True)
    assert predicted.created and "overlaps *:25" in predicted.warnings[0] and "check mode" in predicted.warnings[0]
    subprocess.run(["postconf", "-c", str(tree.primary), "-e", "inet_interfaces=127.0.0.1"], check=True)
    edge = tree.run(master_service_disable="", listen=["10.9.9.9:25"])
    assert edge.created
    # The other way round: the primary may not take the edge's address, but may keep loopback.
    subprocess.run(["postconf", "-c", edge.config_directory, "-e", "inet_interfaces=10.9.9.9"], check=True)
    with pytest.raises(lib.InstanceError, match="instance - would listen"):
        tree.run("-", listen=["25"])
    assert not tree.run("-", listen=["127.0.0.1:25"]).changed


@needs_postfix
def test_primary_is_reported_not_managed(tree: Tree) -> None:
    result = tree.run("-")
    assert not result.changed and result.config_directory == str(tree.primary)
    assert result.queue_directory == str(tree.root / "spool" / "postfix")
    with pytest.raises(lib.InstanceError, match="cannot be removed"):
        tree.run("-", state="absent")
    with pytest.raises(lib.InstanceError, match="queue_directory is"):
        tree.run("-", queue_directory="/elsewhere")


def _queue_mail(queue: str, count: int = 1) -> None:
    for idx in range(count):
        Path(queue, "deferred", "A").mkdir(exist_ok=True)
        Path(queue, "deferred", "A", f"A{idx}").write_text("message")


@needs_postfix
def test_remove_refuses_queued_mail_unless_forced(tree: Tree) -> None:
    created = tree.run()
    _queue_mail(created.queue_directory, 2)
    with pytest.raises(lib.InstanceError, match="still holds 2 message"):
        tree.run(state="absent")
    assert os.path.isdir(created.config_directory)
    assert tree.param(str(tree.primary), "multi_instance_directories") == created.config_directory
    predicted = tree.run(state="absent", force=True, check_mode=True)
    assert predicted.removed and os.path.isdir(created.queue_directory)
    removed = tree.run(state="absent", force=True)
    assert removed.actions == predicted.actions and removed.queued == 2
    assert any("2 queued message(s) deleted" in a for a in removed.actions)
    for path in (created.config_directory, created.queue_directory, created.data_directory):
        assert not os.path.exists(path)
    assert tree.param(str(tree.primary), "multi_instance_directories") == ""
    assert not tree.run(state="absent").changed


@needs_postfix
def test_remove_refuses_a_running_instance(tree: Tree) -> None:
    created = tree.run()
    proc = tree.root / "proc" / "4321"
    proc.mkdir(parents=True)
    (proc / "cwd").symlink_to(created.queue_directory)
    request = lib.Request(name="postfix-edge", state="absent", force=True)
    with pytest.raises(lib.InstanceError, match="is running .processes 4321"):
        lib.run(request, postfix=tree.postfix, proc=str(tree.root / "proc"))
    assert os.path.isdir(created.queue_directory)


@needs_postfix
def test_queue_is_not_moved_away_from_mail(tree: Tree) -> None:
    created = tree.run()
    _queue_mail(created.queue_directory)
    with pytest.raises(lib.InstanceError, match="would move from"):
        tree.run(queue_directory=str(tree.root / "spool" / "moved"))


@needs_postfix
def test_refused_configuration_creates_nothing(tree: Tree) -> None:
    (tree.root / "meta" / "master.cf.proto").write_text("smtp inet n - y - - smtpd\nbroken unix x\n")
    with pytest.raises(lib.InstanceError, match="refused the new instance's configuration"):
        tree.run()
    assert not (tree.etc / "postfix-edge").exists()
    assert tree.param(str(tree.primary), "multi_instance_directories") == ""
