"""The systemd generator: units from the files on disk, last good set on errors, masks, timing."""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _masterless_generator
from ansible_collections.mailfleet.postfix.tests.unit.plugins.modules.postfix_env import have_postfix_user

DEBIAN = (Path(__file__).parent / "fixtures" / "debian-master.cf").read_text()
FACTS = {
    "config_directory": "/etc/postfix", "queue_directory": "/var/spool/postfix", "data_directory": "/var/lib/postfix",
    "daemon_directory": "/usr/lib/postfix/sbin", "command_directory": "/usr/sbin", "mail_owner": "postfix",
    "setgid_group": "postdrop", "default_process_limit": "100", "inet_interfaces": "all", "inet_protocols": "all",
    "master_service_disable": "", "compatibility_level": "3.6", "multi_instance_name": "",
    "smtpd_tls_key_file": "", "smtpd_tls_cert_file": "",
}


class Host:
    def __init__(self, tmp: Path, facts: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.etc = tmp / "etc-postfix"
        self.etc.mkdir()
        (self.etc / "master.cf").write_text(DEBIAN)
        self.conf = tmp / "instances"
        self.conf.mkdir()
        self.run = tmp / "run"
        self.state = tmp / "state"
        self.out = tmp / "out"
        self.early = tmp / "early"
        self.facts = dict(FACTS, config_directory=str(self.etc), **(facts or {}))
        self.postconf = tmp / "postconf"
        self.write_facts()

    def write_facts(self) -> None:
        lines = "".join(f"{k} = {v}\n" for k, v in self.facts.items())
        (self.tmp / "facts").write_text(lines)
        self.postconf.write_text(f"#!/bin/sh\ncat {self.tmp / 'facts'}\n")
        self.postconf.chmod(0o755)

    def enable(self, name: str = "default") -> None:
        (self.conf / f"{name}.conf").write_text(f"# test\nconfig_directory = {self.etc}\n")

    def generate(self) -> int:
        for d in (self.out, self.early):
            if d.exists():
                for p in sorted(d.rglob("*"), reverse=True):
                    p.unlink() if not p.is_dir() or p.is_symlink() else p.rmdir()
        return _masterless_generator.generate(str(self.out), str(self.early), conf_dir=str(self.conf), run_dir=str(self.run),
                                              state_dir=str(self.state), postconf=str(self.postconf))


pytestmark = pytest.mark.skipif(not _masterless_generator.os.path.exists("/etc/passwd"), reason="needs a passwd database")


needs_postfix = pytest.mark.skipif(not have_postfix_user(), reason="mail_owner 'postfix' must exist")


@needs_postfix
def test_generates_units_links_and_mask(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = Host(tmp_path)
    host.enable()
    assert host.generate() == 0
    assert (host.out / "postfix-default-smtp-inet.socket").is_file()
    link = host.out / "multi-user.target.wants" / "postfix-default.target"
    assert link.is_symlink() and os.readlink(link) == "../postfix-default.target"
    mask = next(host.early.iterdir())
    assert mask.is_symlink() and os.readlink(mask) == "/dev/null"
    assert mask.name == "postfix@-.service"  # the Debian 12 layout of tests/unit/conftest.py
    # The copy kept for a later broken master.cf is the same set (plus the stub that ends an earlier failure).
    saved, masks = _masterless_generator.split_record(_masterless_generator.load_set(str(host.run / "default" / "units.set")))
    assert {**saved, **_masterless_generator.cleared_units("default")} == _masterless_generator.read_tree(str(host.out))
    assert masks == [mask.name]
    assert capsys.readouterr().err == ""


def test_an_upgrade_to_debian_13_masks_its_master_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    units = tmp_path / "units"
    units.mkdir()
    shutil.copyfile(SYSTEMD_FIXTURES / "debian-12" / "postfix@.service", units / "postfix@.service")
    monkeypatch.setattr(_masterless_generator, "UNIT_DIRS", (str(units),))
    host = Host(tmp_path)
    host.enable()
    assert host.generate() == 0
    assert sorted(p.name for p in host.early.iterdir()) == ["postfix@-.service"]
    # The package upgrade replaces the template; master.cf and main.cf are unchanged.
    shutil.copyfile(SYSTEMD_FIXTURES / "debian-13" / "postfix@.service", units / "postfix@.service")
    shutil.rmtree(host.early)
    assert host.generate() == 0
    assert "postfix.service" in {p.name for p in host.early.iterdir()}
    target = (host.out / "postfix-default.target").read_text()
    assert "Conflicts=postfix.service" in target


def test_no_enabled_instance_writes_nothing(tmp_path: Path) -> None:
    host = Host(tmp_path)
    assert host.generate() == 0
    assert not host.out.exists() or not any(host.out.iterdir())


@needs_postfix
def test_broken_master_cf_keeps_the_last_good_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = Host(tmp_path)
    host.enable()
    host.generate()
    good = _masterless_generator.read_tree(str(host.out))
    (host.etc / "master.cf").write_text(DEBIAN + "oops unix - - y - - frobnicate\n")
    assert host.generate() == 1
    err = capsys.readouterr().err
    assert "master.cf line 39" in err and "frobnicate" in err and "keeping the last good unit set" in err
    # The good units plus a unit that fails at boot, so `systemctl --failed` shows the problem.
    out = _masterless_generator.read_tree(str(host.out))
    assert set(out) == set(good) | {"multi-user.target.wants/postfix-default-config-error.service"}
    assert {k: v for k, v in out.items() if "config-error" not in k} == {k: v for k, v in good.items() if "config-error" not in k}
    assert "line 39" in out["postfix-default-config-error.service"] and "ExecStart=/bin/false" in out["postfix-default-config-error.service"]
    # Fixed: the error unit is a stub again that never runs (systemd forgets the failure, CollectMode=).
    (host.etc / "master.cf").write_text(DEBIAN)
    assert host.generate() == 0
    assert _masterless_generator.read_tree(str(host.out)) == good
    assert any(host.early.iterdir())  # still masked


@needs_postfix
def test_falls_back_to_the_modules_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = Host(tmp_path)
    host.enable()
    host.generate()
    good = _masterless_generator.read_tree(str(host.out))
    _masterless_generator.save_set(str(host.state / "default" / "units.set"), {**good, "@inputs": "older"})
    import shutil

    shutil.rmtree(host.run)  # after a reboot /run is empty
    (host.etc / "master.cf").write_text("pickup unix n - y 60 1 pickup\npickup fifo n - y 60 1 pickup\n")
    assert host.generate() == 1
    assert str(host.state) in capsys.readouterr().err
    out = _masterless_generator.read_tree(str(host.out))
    assert {k: v for k, v in out.items() if "config-error" not in k} == {k: v for k, v in good.items() if "config-error" not in k}


def test_nothing_good_means_nothing_started(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = Host(tmp_path)
    host.enable()
    (host.etc / "master.cf").write_text("qmgr inet n - n 300 1 qmgr\n")
    assert host.generate() == 1
    assert "not started" in capsys.readouterr().err
    # No daemon and no listener: only a target that requires a unit failing with the reason.
    assert sorted(_masterless_generator.read_tree(str(host.out))) == [
        "multi-user.target.wants/postfix-default.target", "postfix-default-config-error.service", "postfix-default.target"]


@needs_postfix
def test_instance_name_must_match_main_cf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = Host(tmp_path, {"multi_instance_name": "postfix-out"})
    host.enable("default")
    assert host.generate() == 1
    assert "multi_instance_name = postfix-out" in capsys.readouterr().err


def test_postconf_failure_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = Host(tmp_path)
    host.enable()
    host.postconf.write_text("#!/bin/sh\necho 'postconf: fatal: open main.cf: No such file' >&2\nexit 1\n")
    assert host.generate() == 1
    assert "postconf -c" in capsys.readouterr().err


def test_bad_conf_is_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = Host(tmp_path)
    (host.conf / "x.conf").write_text("config_directory = relative\n")
    assert host.generate() == 0
    assert "absolute" in capsys.readouterr().err


def test_saved_set_roundtrip(tmp_path: Path) -> None:
    files = {"a.service": "x\n\nLine 2\n", "w/b.target": "@link:b.target", "empty.slice": ""}
    _masterless_generator.save_set(str(tmp_path / "s" / "units.set"), files)
    assert _masterless_generator.load_set(str(tmp_path / "s" / "units.set")) == files


def test_run_captures_output() -> None:
    assert _masterless_generator.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]) == (3, "out\n", "err\n")


def test_main_usage_and_never_fails(tmp_path: Path) -> None:
    assert _masterless_generator.main([]) == 2
    assert _masterless_generator.main([str(tmp_path / "o"), str(tmp_path / "e"), str(tmp_path / "l")]) == 0


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may traverse (pytest's tmp_path is 0700)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="mailfleet-access-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown test files")
def test_owner_access(open_dir: Path) -> None:
    tmp_path = open_dir
    daemon_gid = grp.getgrnam("daemon").gr_gid
    nobody = "nobody"
    readable = tmp_path / "cert.pem"
    readable.write_text("x")
    readable.chmod(0o644)
    secret = tmp_path / "key.pem"
    secret.write_text("x")
    secret.chmod(0o600)
    grouped = tmp_path / "grouped.pem"
    grouped.write_text("x")
    os.chown(grouped, 0, daemon_gid)
    grouped.chmod(0o640)
    assert _masterless_generator.owner_access([str(readable)], nobody) == ([], True)
    # Only a dedicated key group is granted (issue 14): daemon (gid 1) could open other files.
    refused: list[str] = []
    assert _masterless_generator.owner_access([str(grouped)], nobody, refused) == ([], False)
    assert refused == [f"daemon ({grouped})"]
    assert _masterless_generator.owner_access([str(readable), str(secret)], nobody) == ([], False)
    assert _masterless_generator.owner_access([str(tmp_path / "missing.pem")], nobody) == ([], True)
    open_dir.chmod(0o700)  # a directory on the way that mail_owner cannot search
    assert _masterless_generator.owner_access([str(readable)], nobody) == ([], False)
    open_dir.chmod(0o755)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown test files")
@pytest.mark.parametrize("group", ["root", "shadow", "disk", "adm", "ssl-cert"])
def test_only_the_key_group_is_granted(open_dir: Path, group: str) -> None:
    """A root:shadow 0640 key must not give smtpd the shadow group (it could read /etc/shadow)."""
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        pytest.skip(f"no group {group} here")
    key = open_dir / "key.pem"
    key.write_text("x")
    os.chown(key, 0, gid)
    key.chmod(0o640)
    refused: list[str] = []
    groups, enough = _masterless_generator.owner_access([str(key)], "nobody", refused)
    if group == "ssl-cert":
        assert (groups, enough, refused) == (["ssl-cert"], True, [])
    else:
        assert (groups, enough) == ([], False) and refused == [f"{group} ({key})"]


@needs_postfix
def test_unreadable_tls_key_starts_smtpd_as_root(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root")
    key = tmp_path / "key.pem"
    key.write_text("x")
    key.chmod(0o600)
    host = Host(tmp_path, {"smtpd_tls_key_file": str(key)})
    host.enable()
    host.generate()
    unit = (host.out / "postfix-default-smtp-inet@.service").read_text()
    assert "User=postfix" not in unit and " -u " in unit


@needs_postfix
def test_shadow_key_starts_smtpd_as_root_with_a_warning(
        tmp_path: Path, open_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root")
    key = open_dir / "key.pem"
    key.write_text("x")
    os.chown(key, 0, grp.getgrnam("shadow").gr_gid)
    key.chmod(0o640)
    host = Host(tmp_path, {"smtpd_tls_key_file": str(key)})
    host.enable()
    host.generate()
    unit = (host.out / "postfix-default-smtp-inet@.service").read_text()
    assert "SupplementaryGroups=" not in unit and "User=postfix" not in unit and " -u " in unit
    assert "through group shadow" in capsys.readouterr().err


@needs_postfix
def test_unchanged_inputs_reuse_the_saved_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host(tmp_path)
    host.enable()
    host.generate()
    first = _masterless_generator.read_tree(str(host.out))
    calls: list[object] = []

    def no_build(*args: object, **kwargs: object) -> None:
        calls.append(args)
        pytest.fail("rebuilt")

    monkeypatch.setattr(_masterless_generator, "build", no_build)
    host.generate()
    assert _masterless_generator.read_tree(str(host.out)) == first and not calls
    monkeypatch.undo()
    (host.etc / "master.cf").write_text(DEBIAN.replace("smtp      inet  n       -       y       -       -       smtpd",
                                                       "2525      inet  n       -       y       -       -       smtpd"))
    host.generate()
    assert "postfix-default-2525-inet.socket" in _masterless_generator.read_tree(str(host.out))


@needs_postfix
def test_generator_is_fast(tmp_path: Path) -> None:
    host = Host(tmp_path)
    host.enable()
    host.generate()
    start = time.perf_counter()
    host.generate()
    assert time.perf_counter() - start < 1.0  # bench/generator.sh measures the real budget (50 ms)


def test_mapping_imports_nothing_slow(tmp_path: Path) -> None:
    """re, typing and dataclasses would add ~25 ms to every boot and daemon-reload with a changed master.cf."""
    package = tmp_path / "mailfleet_postfix"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in _masterless_generator.LIBRARY:
        shutil.copy(Path(_masterless_generator.__file__).parent / f"{name}.py", package)
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from mailfleet_postfix import _masterless_generator, _masterless_units\n"
        "units = _masterless_units.build_units(sys.stdin.read(), _masterless_units.Instance()).units\n"
        "assert len(units) > 50, len(units)\n"
        "print(' '.join(sorted({'re', 'typing', 'dataclasses', 'collections'} & set(sys.modules))))\n"
    )
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], input=DEBIAN, capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == []


SYSTEMD_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "systemd"
UNKNOWN_TEMPLATE = "[Service]\nExecStart=/usr/local/sbin/run-postfix %i\n"


@pytest.mark.parametrize(
    ("layout", "name", "config_directory", "want"),
    [
        ("debian-12", "-", "/etc/postfix", ("postfix@-.service",)),
        ("debian-12", "postfix-edge", "/etc/postfix-edge", ("postfix@postfix-edge.service",)),
        ("debian-13", "-", "/etc/postfix", ("postfix.service",)),
        ("debian-13", "", "/etc/postfix", ("postfix.service",)),
        ("debian-13", "postfix-edge", "/etc/postfix-edge", ("postfix@edge.service",)),
        # Debian 13's template serves /etc/postfix-NAME whatever the instance is called.
        ("debian-13", "postfix-edge", "/etc/postfix-out/", ("postfix@out.service",)),
        ("debian-13", "mail-edge", "/srv/mail-edge", ()),
        ("debian-13", "postfix-edge", "/etc/postfix-", ()),
        (None, "-", "/etc/postfix", ("postfix.service",)),
        (None, "postfix-edge", "/etc/postfix-edge", ()),
        # A layout we do not know: mask every unit that could run this queue's master.
        ("unknown", "-", "/etc/postfix", ("postfix.service", "postfix@-.service")),
        ("unknown", "postfix-edge", "/etc/postfix-out", ("postfix@postfix-edge.service", "postfix@out.service")),
    ],
)
def test_master_units_follow_the_distribution_layout(tmp_path: Path, layout: str | None, name: str,
                                                     config_directory: str, want: tuple[str, ...]) -> None:
    units = tmp_path / "units"
    units.mkdir()
    if layout == "unknown":
        (units / "postfix@.service").write_text(UNKNOWN_TEMPLATE)
    elif layout is not None:
        shutil.copyfile(SYSTEMD_FIXTURES / layout / "postfix@.service", units / "postfix@.service")
    assert _masterless_generator.master_units(name, config_directory, (str(tmp_path / "nowhere"), str(units))) == want


def test_an_admins_copy_in_etc_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc, lib = tmp_path / "etc", tmp_path / "lib"
    etc.mkdir()
    lib.mkdir()
    shutil.copyfile(SYSTEMD_FIXTURES / "debian-13" / "postfix@.service", etc / "postfix@.service")
    shutil.copyfile(SYSTEMD_FIXTURES / "debian-12" / "postfix@.service", lib / "postfix@.service")
    monkeypatch.setattr(_masterless_generator, "UNIT_DIRS", (str(etc), str(lib)))
    assert _masterless_generator.master_units("-") == ("postfix.service",)


@pytest.mark.parametrize("name", _masterless_generator.LIBRARY)
def test_every_library_module_is_in_the_key(tmp_path: Path, name: str) -> None:
    """A host whose library changed (an upgrade of any module the units come from) maps anew."""
    import shutil

    host = Host(tmp_path)
    host.enable()
    lib = tmp_path / "lib"
    lib.mkdir()
    here = Path(_masterless_generator.__file__).parent
    for module in _masterless_generator.LIBRARY:
        shutil.copy(here / f"{module}.py", lib / f"{module}.py")
    inputs = _masterless_generator.Inputs("default", {"config_directory": str(host.etc)}, postconf=str(host.postconf))
    before = inputs.key(str(lib))
    with open(lib / f"{name}.py", "a", encoding="utf-8") as handle:
        handle.write("\n# changed\n")
    assert inputs.key(str(lib)) != before


def test_group_class_decides_for_a_member_of_the_group() -> None:
    """POSIX: a member of the file's group gets the group bits, never the "other" bits."""
    def st(mode: int) -> os.stat_result:
        return os.stat_result((mode, 0, 0, 1, 0, 50, 0, 0, 0, 0))
    assert _masterless_generator._may(st(0o100604), 101, {50}, 4) is False
    assert _masterless_generator._may(st(0o100640), 101, {50}, 4) is True
    assert _masterless_generator._may(st(0o100604), 101, {60}, 4) is True


# --------------------------------------------------------------------------- start-up time: work done while postconf runs


def cold_tree(host: Host) -> dict[str, str]:
    """What a run with nothing saved writes (the reference for the runs that work ahead)."""
    shutil.rmtree(host.run, ignore_errors=True)
    host.generate()
    return _masterless_generator.read_tree(str(host.out))


@needs_postfix
def test_a_changed_master_cf_is_mapped_while_postconf_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mapping made ahead with the saved set's facts is used when postconf answers the same."""
    host = Host(tmp_path)
    host.enable()
    host.generate()
    (host.etc / "master.cf").write_text(DEBIAN.replace("smtp      inet", "2525      inet", 1))
    builds: list[object] = []
    real = _masterless_generator.build

    def counted(*args: object, **kwargs: object) -> object:
        builds.append(kwargs.get("facts"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_masterless_generator, "build", counted)
    host.generate()
    ahead = _masterless_generator.read_tree(str(host.out))
    assert len(builds) == 1 and builds[0] is not None  # mapped once, with the saved facts
    monkeypatch.undo()
    assert "postfix-default-2525-inet.socket" in ahead
    assert ahead == cold_tree(host)


@needs_postfix
def test_a_guess_with_other_facts_is_never_used(tmp_path: Path) -> None:
    """master.cf and main.cf changed together: the units are those of postconf's new answer."""
    host = Host(tmp_path)
    host.enable()
    host.generate()
    (host.etc / "master.cf").write_text(DEBIAN.replace("smtp      inet", "2525      inet", 1))
    host.facts["default_process_limit"] = "7"
    host.write_facts()
    host.generate()
    out = _masterless_generator.read_tree(str(host.out))
    assert "Backlog=100" not in out["postfix-default-2525-inet.socket"]
    assert out == cold_tree(host)


@needs_postfix
def test_units_written_ahead_are_replaced_when_main_cf_changed(tmp_path: Path) -> None:
    """An unchanged master.cf writes the saved units while postconf runs; a changed main.cf then
    removes what its mapping lacks (no unit of the old set is left behind)."""
    host = Host(tmp_path)
    host.enable()
    host.generate()
    before = _masterless_generator.read_tree(str(host.out))
    host.facts["master_service_disable"] = "smtp.inet"
    host.write_facts()
    host.generate()
    out = _masterless_generator.read_tree(str(host.out))
    assert "postfix-default-smtp-inet.socket" in before and "postfix-default-smtp-inet.socket" not in out
    assert out == cold_tree(host)


@needs_postfix
def test_units_written_ahead_stay_when_postconf_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = Host(tmp_path)
    host.enable()
    host.generate()
    good = _masterless_generator.read_tree(str(host.out))
    host.postconf.write_text("#!/bin/sh\necho 'postconf: fatal: bad main.cf' >&2\nexit 1\n")
    assert host.generate() == 1
    assert "bad main.cf" in capsys.readouterr().err
    out = _masterless_generator.read_tree(str(host.out))
    assert {k: v for k, v in out.items() if "config-error" not in k} == {k: v for k, v in good.items() if "config-error" not in k}
    assert "ExecStart=/bin/false" in out["postfix-default-config-error.service"]


def test_rewrite_tree_writes_only_what_differs(tmp_path: Path) -> None:
    written = {"a.service": "a\n", "b.service": "b\n", "w/x.target": "@link:x.target", "w/y.target": "@link:y.target"}
    _masterless_generator.write_tree(str(tmp_path), written)
    target = tmp_path / "elsewhere"
    target.write_text("kept\n")
    files = {"a.service": "a\n", "b.service": "B\n", "w/x.target": "new file\n", "c.service": "c\n"}
    _masterless_generator.rewrite_tree(str(tmp_path), files, written)
    target.unlink()
    assert _masterless_generator.read_tree(str(tmp_path)) == files
    assert not (tmp_path / "w" / "x.target").is_symlink()  # a link replaced by a file is not written through


def test_every_postconf_starts_before_the_first_is_waited_for(tmp_path: Path) -> None:
    """Each instance's postconf (the longest part of a run) runs while the library is imported."""
    host = Host(tmp_path)
    log = tmp_path / "log"
    host.postconf.write_text(f"#!/bin/sh\necho start >> {log}\nsleep 0.3\necho end >> {log}\ncat {tmp_path / 'facts'}\n")
    for name in ("a", "b"):
        host.enable(name)
    host.generate()  # the instances' names do not match main.cf: failure units, after both ran
    assert log.read_text().split() == ["start", "start", "end", "end"]


def test_a_postconf_that_is_not_used_is_reaped(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host(tmp_path)
    (host.conf / "..conf").write_text(f"config_directory = {host.etc}\n")  # no instance name: skipped
    children: list[_masterless_generator.Spawned] = []
    real = _masterless_generator.Spawned.__init__

    def spawned(self: _masterless_generator.Spawned, argv: list[str]) -> None:
        real(self, argv)
        children.append(self)

    monkeypatch.setattr(_masterless_generator.Spawned, "__init__", spawned)
    host.generate()
    assert "cannot name the instance's paths and units" in capsys.readouterr().err
    assert len(children) == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(children[0].pid, os.WNOHANG)  # reaped: no zombie, no open pipe


def test_a_postconf_that_cannot_start_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = Host(tmp_path)
    host.postconf = tmp_path / "missing-postconf"
    host.enable()
    assert host.generate() == 1
    assert "missing-postconf: No such file" in capsys.readouterr().err


@needs_postfix
@pytest.mark.parametrize("case", ["cold", "unchanged", "changed"])
def test_generator_run_imports_nothing_slow(tmp_path: Path, case: str) -> None:
    """A whole run, as systemd starts it: no module that costs start-up time (hashlib loads OpenSSL,
    ~2 ms; re, typing and dataclasses more) for what it does at every boot and daemon-reload."""
    host = Host(tmp_path)
    host.enable()
    if case != "cold":
        host.generate()
    if case == "changed":
        (host.etc / "master.cf").write_text(DEBIAN + "# edited\n")
    package = tmp_path / "lib" / "mailfleet_postfix"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name in _masterless_generator.LIBRARY:
        shutil.copy(Path(_masterless_generator.__file__).parent / f"{name}.py", package)
    slow = {"re", "typing", "dataclasses", "collections", "hashlib", "_hashlib", "subprocess", "json", "enum",
            "inspect", "tempfile", "shutil", "locale", "pathlib"}
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(package.parent)!r})\n"
        "from mailfleet_postfix import _masterless_generator\n"
        f"failed = _masterless_generator.generate({str(host.out)!r}, {str(host.early)!r}, conf_dir={str(host.conf)!r}, "
        f"run_dir={str(host.run)!r}, state_dir={str(host.state)!r}, postconf={str(host.postconf)!r})\n"
        f"print(failed, ' '.join(sorted(set({sorted(slow)!r}) & set(sys.modules))))\n"
    )
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, check=False)
    assert done.stdout.split() == ["0"], done.stderr


@needs_postfix
def test_the_installed_launcher_runs_and_exits_without_teardown(tmp_path: Path) -> None:
    """The launcher ends with os._exit (no interpreter teardown): units, saved set and log still complete."""
    host = Host(tmp_path)
    host.enable()
    (host.conf / "x.conf").write_text("config_directory = relative\n")
    lib = tmp_path / "lib"
    (lib / "mailfleet_postfix").mkdir(parents=True)
    (lib / "mailfleet_postfix" / "__init__.py").write_text("")
    for name in _masterless_generator.LIBRARY:
        shutil.copy(Path(_masterless_generator.__file__).parent / f"{name}.py", lib / "mailfleet_postfix")
    launcher = tmp_path / "generator"
    launcher.write_text(_masterless_generator.LAUNCHER.format(python=sys.executable, libexec=str(lib)))
    launcher.chmod(0o755)
    env = {"MAILFLEET_POSTFIX_CONF_DIR": str(host.conf), "MAILFLEET_POSTFIX_RUN_DIR": str(host.run),
           "MAILFLEET_POSTFIX_STATE_DIR": str(host.state), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    # The generator runs /usr/sbin/postconf; point it at the fake one for this test only.
    (lib / "mailfleet_postfix" / "_masterless_generator.py").write_text(
        (lib / "mailfleet_postfix" / "_masterless_generator.py").read_text().replace(
            'POSTCONF = "/usr/sbin/postconf"', f'POSTCONF = {str(host.postconf)!r}'))
    done = subprocess.run([str(launcher), str(host.out), str(host.early), str(tmp_path / "late")], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert "x.conf: " in done.stderr and "absolute" in done.stderr
    assert "postfix-default.target" in _masterless_generator.read_tree(str(host.out))
    assert _masterless_generator.load_set(str(host.run / "default" / "units.set"))["@postconf"] == (tmp_path / "facts").read_text()
