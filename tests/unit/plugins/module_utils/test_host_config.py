"""Staged writes: refuse bad config dirs, validate on a copy with Postfix, back up, replace atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _host_config
from ansible_collections.mailfleet.postfix.plugins.module_utils._host_config import (
    FileOpsError,
    LocalHost,
    PostfixCheckError,
    Tools,
    read_config,
    require_config_dir,
    validate_staged,
    write_config,
)
from ansible_collections.mailfleet.postfix.tests.unit.plugins.modules.postfix_env import (
    ConfigDir,
    make_config_dir,
    needs_postfix,
    needs_postfix_check,
)

NO_POSTFIX = Tools(postconf=None, postfix=None)
NEW_ENTRY = "2525      inet  n       -       y       -       -       smtpd\n"


@pytest.fixture
def conf(tmp_path: Path) -> ConfigDir:
    return make_config_dir(tmp_path)


@pytest.fixture
def host(tmp_path: Path) -> LocalHost:
    work = tmp_path / "work"
    work.mkdir()
    return LocalHost(str(work))


def test_missing_config_dir(tmp_path: Path) -> None:
    with pytest.raises(FileOpsError, match=r"config_dir .*/nowhere does not exist; expected a Postfix config directory"):
        require_config_dir(str(tmp_path / "nowhere"))


def test_file_is_not_a_config_dir(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileOpsError, match="is not a directory"):
        require_config_dir(str(tmp_path / "file"))


def test_directory_without_postfix_files(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text("")
    with pytest.raises(FileOpsError, match=r"is not a Postfix config directory: no master.cf in it"):
        write_config(None, config_dir=str(tmp_path), contents={"master.cf": ""})


def test_unchanged_contents_write_nothing(conf: ConfigDir, host: LocalHost) -> None:
    before = conf.snapshot()
    outcome = write_config(host, config_dir=str(conf.path), contents={"master.cf": conf.master.read_text()})
    assert outcome.changed == [] and outcome.checks == []
    assert conf.snapshot() == before


def test_write_replaces_atomically_keeping_mode_and_making_a_backup(conf: ConfigDir, host: LocalHost) -> None:
    conf.master.chmod(0o640)
    old = conf.master.read_bytes()
    outcome = write_config(host, config_dir=str(conf.path), contents={"master.cf": old.decode() + NEW_ENTRY},
                           backup=True, tools=NO_POSTFIX)
    assert outcome.changed == [str(conf.master)]
    assert conf.master.read_bytes() == old + NEW_ENTRY.encode()
    assert conf.master.stat().st_mode & 0o777 == 0o640
    backup = Path(outcome.backups[str(conf.master)])
    assert backup.parent == conf.path and backup.name.startswith("master.cf.") and backup.name.endswith("~")
    assert backup.read_bytes() == old
    assert not [p for p in conf.path.iterdir() if p.name.startswith(".master.cf.")], "temp file left behind"


def test_a_linked_master_cf_is_written_where_it_points(conf: ConfigDir, host: LocalHost, tmp_path: Path) -> None:
    """As lineinfile does: the link stays, its target keeps mode and owner, and a rerun changes nothing."""
    real = tmp_path / "managed-master.cf"
    real.write_bytes(conf.master.read_bytes())
    real.chmod(0o640)
    conf.master.unlink()
    conf.master.symlink_to(real)
    text = real.read_text() + NEW_ENTRY
    outcome = write_config(host, config_dir=str(conf.path), contents={"master.cf": text}, backup=True, tools=NO_POSTFIX)
    assert outcome.changed == [str(conf.master)] and conf.master.is_symlink()
    assert real.read_text() == text and real.stat().st_mode & 0o777 == 0o640
    assert Path(outcome.backups[str(conf.master)]).read_text() == text.replace(NEW_ENTRY, "")
    again = write_config(host, config_dir=str(conf.path), contents={"master.cf": text}, tools=NO_POSTFIX)
    assert again.changed == []


def test_check_mode_validates_but_writes_nothing(conf: ConfigDir, host: LocalHost) -> None:
    before = conf.snapshot()
    outcome = write_config(host, config_dir=str(conf.path), contents={"master.cf": conf.master.read_text() + NEW_ENTRY},
                           backup=True, check_mode=True, tools=NO_POSTFIX)
    assert outcome.changed == [str(conf.master)] and outcome.backups == {}
    assert outcome.checks == ["Postfix is not installed here: postconf -M and postfix check skipped"]
    assert conf.snapshot() == before


def test_undecodable_bytes_survive(conf: ConfigDir, host: LocalHost) -> None:
    conf.master.write_bytes(b"# caf\xe9 in latin-1\n" + conf.master.read_bytes())
    text = read_config(str(conf.path), "master.cf")
    write_config(host, config_dir=str(conf.path), contents={"master.cf": text + NEW_ENTRY}, tools=NO_POSTFIX)
    assert conf.master.read_bytes().startswith(b"# caf\xe9 in latin-1\n")


def test_unknown_file_name_is_a_programming_error(conf: ConfigDir) -> None:
    with pytest.raises(ValueError, match="unsupported config file"):
        write_config(None, config_dir=str(conf.path), contents={"aliases": ""})


def test_special_files_are_not_staged(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "plain").write_text("")
    assert _host_config._special_files(str(tmp_path), ["fifo", "plain"]) == ["fifo"]


# --------------------------------------------------------------------------- with Postfix


@needs_postfix
def test_postfix_accepts_a_good_change(conf: ConfigDir, host: LocalHost) -> None:
    outcome = write_config(host, config_dir=str(conf.path), contents={"master.cf": conf.master.read_text() + NEW_ENTRY})
    assert outcome.checks[0] == f"postconf -c {conf.path} -M: Postfix parsed the staged master.cf"
    assert outcome.warnings == []
    assert conf.master.read_text().endswith(NEW_ENTRY)
    assert os.listdir(host.tmpdir) == [], "the stage must be removed"
    assert os.listdir(conf.queue) == [], "the real queue must not be touched"


@needs_postfix
def test_postconf_refusal_writes_nothing_and_returns_postfixs_message(conf: ConfigDir, host: LocalHost) -> None:
    before = conf.snapshot()
    with pytest.raises(PostfixCheckError) as exc:
        write_config(host, config_dir=str(conf.path), contents={"master.cf": conf.master.read_text() + "x tcp n - y - - smtpd\n"})
    assert 'fatal: invalid type field "tcp"' in str(exc.value)
    assert str(exc.value).startswith("postconf -M refused the new configuration: ")
    assert conf.snapshot() == before


@needs_postfix
def test_new_master_cf_warning_is_a_refusal(conf: ConfigDir, host: LocalHost) -> None:
    before = conf.snapshot()
    bad = conf.master.read_text() + NEW_ENTRY + "  -o mailfleet_typo_parameter=1\n"
    with pytest.raises(PostfixCheckError, match=rf"{conf.path}/master.cf: unused parameter: mailfleet_typo_parameter=1"):
        write_config(host, config_dir=str(conf.path), contents={"master.cf": bad})
    assert conf.snapshot() == before


@needs_postfix
def test_existing_warnings_do_not_block_other_changes(conf: ConfigDir, host: LocalHost) -> None:
    conf.master.write_text(conf.master.read_text() + "  -o mailfleet_old_typo=1\n")
    write_config(host, config_dir=str(conf.path), contents={"master.cf": conf.master.read_text() + NEW_ENTRY})
    assert conf.master.read_text().endswith(NEW_ENTRY)


@needs_postfix
def test_main_cf_warnings_are_passed_on(conf: ConfigDir, host: LocalHost) -> None:
    outcome = write_config(host, config_dir=str(conf.path),
                           contents={"main.cf": conf.main.read_text() + "mailfleet_unused = 1\n"})
    assert any(f"{conf.path}/main.cf: unused parameter: mailfleet_unused=1" in w for w in outcome.warnings)
    assert "mailfleet_unused" in conf.main.read_text()


@needs_postfix
def test_main_cf_refusal_names_its_line(conf: ConfigDir, host: LocalHost) -> None:
    text = conf.main.read_text()
    line = text.count("\n") + 1
    with pytest.raises(PostfixCheckError, match=rf"main.cf, line {line}: missing '=' after attribute name"):
        validate_staged(str(conf.path), {"main.cf": text + "no equals sign\n"}, tmpdir=host.tmpdir)


@needs_postfix_check
def test_postfix_check_failure_returns_its_message(conf: ConfigDir, host: LocalHost) -> None:
    # maillog_file needs the postlog service; only postfix check (not postconf -M) knows that.
    conf.main.write_text(conf.main.read_text() + "maillog_file = /var/log/postfix-test.log\n")
    without_postlog = "".join(x for x in conf.master.read_text().splitlines(True) if not x.startswith("postlog"))
    before = conf.snapshot()
    with pytest.raises(PostfixCheckError) as exc:
        write_config(host, config_dir=str(conf.path), contents={"master.cf": without_postlog})
    assert "missing 'postlog' service in master.cf" in str(exc.value)
    assert str(exc.value).startswith("postfix check refused the new configuration: ")
    assert conf.snapshot() == before
    assert os.listdir(conf.queue) == []


@needs_postfix
def test_postfix_check_is_skipped_without_root(conf: ConfigDir, host: LocalHost, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_host_config.os, "geteuid", lambda: 1000)
    outcome = validate_staged(str(conf.path), {"master.cf": conf.master.read_text() + NEW_ENTRY}, tmpdir=host.tmpdir)
    assert outcome.checks[-1] == "postfix check skipped: it needs root"


@needs_postfix_check
def test_postfix_check_passes_and_says_so(conf: ConfigDir, host: LocalHost) -> None:
    outcome = validate_staged(str(conf.path), {"master.cf": conf.master.read_text() + NEW_ENTRY}, tmpdir=host.tmpdir)
    assert outcome.checks[-1] == f"postfix -c {conf.path} check: passed on the staged copy"
    assert outcome.warnings == []
    assert os.listdir(conf.queue) == []
