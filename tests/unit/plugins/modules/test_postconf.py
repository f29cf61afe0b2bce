"""mailfleet.postfix.postconf run for real (in process) on a temp config dir."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.mailfleet.postfix.tests.unit.plugins.modules.postfix_env import (
    ConfigDir,
    make_config_dir,
    needs_postfix,
    needs_postfix_check,
    run_module,
    warnings_of,
)

SETTINGS = {
    "myhostname": "mail.example.org",
    "smtpd_banner": None,
    "relay_domains": ["example.org", "example.net"],
    "smtputf8_enable": False,
    "default_process_limit": 50,
}


@pytest.fixture
def conf(tmp_path: Path) -> ConfigDir:
    return make_config_dir(tmp_path)


def _run(conf: ConfigDir, tmp_path: Path, *, check: bool = False, diff: bool = False, **args: Any) -> dict[str, Any]:
    return run_module("postconf", {"config_dir": str(conf.path), **args}, tmp=tmp_path, check=check, diff=diff)


def test_changed_then_not_changed(conf: ConfigDir, tmp_path: Path) -> None:
    first = _run(conf, tmp_path, settings=SETTINGS)
    assert first["changed_parameters"] == ["myhostname", "smtpd_banner", "relay_domains", "smtputf8_enable",
                                           "default_process_limit"]
    text = conf.main.read_text()
    assert "myhostname = mail.example.org\n" in text and "smtpd_banner" not in text
    assert "relay_domains = example.org, example.net\n" in text
    assert "smtputf8_enable = no\n" in text and "default_process_limit = 50\n" in text
    second = _run(conf, tmp_path, settings=SETTINGS)
    assert not second["changed"] and second["changed_parameters"] == []


def test_only_changed_lines_differ(conf: ConfigDir, tmp_path: Path) -> None:
    before = conf.main.read_text().splitlines(keepends=True)
    _run(conf, tmp_path, settings={"myhostname": "mail.example.org"})
    after = conf.main.read_text().splitlines(keepends=True)
    assert [x for x in after if x not in before] == ["myhostname = mail.example.org\n"]
    assert [x for x in before if x not in after] == ["myhostname = mx.example.net\n"]


def test_check_mode_predicts_and_writes_nothing(conf: ConfigDir, tmp_path: Path) -> None:
    before = conf.snapshot()
    predicted = _run(conf, tmp_path, check=True, diff=True, settings=SETTINGS)
    assert conf.snapshot() == before
    real = _run(conf, tmp_path, diff=True, settings=SETTINGS)
    assert predicted["changed_parameters"] == real["changed_parameters"]
    assert predicted["diff"] == real["diff"]
    assert real["diff"]["after"] == conf.main.read_text()
    assert real["diff"]["before_header"] == str(conf.main)


def test_backup(conf: ConfigDir, tmp_path: Path) -> None:
    old = conf.main.read_bytes()
    result = _run(conf, tmp_path, settings={"biff": True}, backup=True)
    assert Path(result["backup_file"]).read_bytes() == old
    assert "backup_file" not in _run(conf, tmp_path, settings={"biff": True}, backup=True)


def test_whitespace_only_difference_is_not_a_change(conf: ConfigDir, tmp_path: Path) -> None:
    value = "permit_mynetworks permit_sasl_authenticated defer_unauth_destination"
    assert not _run(conf, tmp_path, settings={"smtpd_relay_restrictions": value})["changed"]


def _refused(conf: ConfigDir, tmp_path: Path, **args: Any) -> str:
    before = conf.snapshot()
    for check in (True, False):
        result = _run(conf, tmp_path, check=check, **args)
        assert result["failed"] and conf.snapshot() == before
    return str(result["msg"])


def test_main_cf_line_without_equals_names_the_line(conf: ConfigDir, tmp_path: Path) -> None:
    conf.main.write_text("biff = no\nthis line is broken\n")
    os.utime(conf.main, (1_600_000_000, 1_600_000_000))
    msg = _refused(conf, tmp_path, settings={"biff": True})
    assert msg == f"{conf.main} line 2: 'this line is broken' has no '='; expected 'name = value'"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"bad name": "x"}, "'bad name' is not a valid parameter name"),
        ({"myhostname": "a\nb"}, "parameter 'myhostname': a main.cf value cannot contain a newline"),
        ({"myhostname": {"a": 1}}, "parameter 'myhostname': a main.cf value must be a string, number, boolean or list"),
    ],
)
def test_bad_settings(conf: ConfigDir, tmp_path: Path, settings: dict[str, Any], message: str) -> None:
    assert message in _refused(conf, tmp_path, settings=settings)


def test_not_a_config_dir(tmp_path: Path) -> None:
    result = run_module("postconf", {"config_dir": str(tmp_path), "settings": {}}, tmp=tmp_path)
    assert result["failed"] and "is not a Postfix config directory: no main.cf or master.cf in it" in result["msg"]


@needs_postfix
def test_unused_parameter_is_a_warning(conf: ConfigDir, tmp_path: Path) -> None:
    result = _run(conf, tmp_path, settings={"mailfleet_custom_list": "a, b"})
    assert result["changed"]
    assert any(f"{conf.main}: unused parameter: mailfleet_custom_list=a, b" in w for w in warnings_of(result))


@needs_postfix_check
def test_postfix_refusal_is_returned(conf: ConfigDir, tmp_path: Path) -> None:
    msg = _refused(conf, tmp_path, settings={"inet_protocols": "carrier-pigeon"})
    assert msg == 'postfix check refused the new configuration: postfix: fatal: unknown inet_protocols value "carrier-pigeon" in "carrier-pigeon"'
