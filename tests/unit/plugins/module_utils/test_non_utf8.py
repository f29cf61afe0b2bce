# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Postfix reads master.cf and main.cf as bytes: a Latin-1 byte is kept everywhere, never replaced.

The fixture is Debian's master.cf.dist plus a Latin-1 comment line and one ``-o`` value with a
Latin-1 byte (0xfc, 'ü'), as old hand-edited files have them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _masterless_generator
from ansible_collections.mailfleet.postfix.plugins.module_utils._classic_unit import build_classic_units
from ansible_collections.mailfleet.postfix.plugins.module_utils._masterless_units import (
    Instance,
    build_units,
    escape,
    exec_quote,
    printable,
    render_unit,
)
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import MasterCf, MasterCfError
from ansible_collections.mailfleet.postfix.tests import fixture_files
from ansible_collections.mailfleet.postfix.tests.unit.plugins.modules.postfix_env import have_postfix_user

ROOT = Path(__file__).resolve().parents[4]
LATIN1 = ROOT / "tests" / "unit" / "fixtures" / "master.cf" / "latin1.cf"
RAW = fixture_files.read(LATIN1)
TEXT = RAW.decode("utf-8", "surrogateescape")
FACTS = {
    "config_directory": "/etc/postfix", "queue_directory": "/var/spool/postfix", "data_directory": "/var/lib/postfix",
    "daemon_directory": "/usr/lib/postfix/sbin", "command_directory": "/usr/sbin", "mail_owner": "postfix",
    "setgid_group": "postdrop", "default_process_limit": "100", "inet_interfaces": "all", "inet_protocols": "all",
    "master_service_disable": "", "compatibility_level": "3.6", "multi_instance_name": "",
}

needs_postfix = pytest.mark.skipif(not have_postfix_user(), reason="mail_owner 'postfix' must exist")


def test_fixture_is_not_utf8() -> None:
    with pytest.raises(UnicodeDecodeError):
        RAW.decode("utf-8")
    assert b"# \xdcbersicht" in RAW and b"-o syslog_name=postfix/m\xfcnchen" in RAW


def test_master_cf_round_trips_byte_exact() -> None:
    doc = MasterCf.parse(TEXT, path=str(LATIN1))
    assert doc.render().encode("utf-8", "surrogateescape") == RAW
    smtp = doc.find("smtp", "inet")
    assert smtp is not None and smtp.options["syslog_name"] == "postfix/m\udcfcnchen"
    # An edit elsewhere keeps the bytes of the comment and of the -o value.
    assert doc.apply({"service": "pickup", "type": "unix", "maxproc": "1", "wakeup": "120"})
    out = doc.render().encode("utf-8", "surrogateescape")
    assert b"# \xdcbersicht der Dienste f\xfcr das B\xfcro" in out and b"syslog_name=postfix/m\xfcnchen" in out


def test_quoting_escapes_the_byte_the_systemd_way() -> None:
    # systemd.syntax(7): \xNN is "character number xx"; unescaped to that byte in ExecStart=.
    assert exec_quote("syslog_name=postfix/m\udcfcnchen") == "syslog_name=postfix/m\\xfcnchen"
    assert exec_quote("a b\udcfc") == '"a b\\xfc"'
    assert exec_quote("m\u00fcnchen") == "m\u00fcnchen"  # UTF-8 stays as it is
    # systemd-escape: every byte that is not a plain character as \xNN, UTF-8 or not.
    assert escape("m\udcfcller") == "m\\xfcller"
    assert escape("m\u00fcller") == "m\\xc3\\xbcller"
    assert printable("B\udcfcro") == "B\\xfcro"


def test_unit_settings_refuse_bytes_systemd_cannot_carry() -> None:
    # ListenStream= and Environment= are not unescaped and must be UTF-8 ("String is not UTF-8 clean").
    with pytest.raises(MasterCfError, match=r"ListenStream= '/x/m\\xfcller' is not UTF-8"):
        render_unit([("Socket", [("ListenStream", "/x/m\udcfcller")])])
    text = render_unit([("Unit", [("Description", "m\udcfcller")])], header="from /etc/postfix-m\udcfc/master.cf")
    assert text == "# from /etc/postfix-m\\xfc/master.cf\n\n[Unit]\nDescription=m\\xfcller\n"
    text.encode("utf-8")


def _exec_start(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("ExecStart="))


def test_units_carry_the_byte_as_an_escape() -> None:
    units = build_units(TEXT, Instance.from_params(FACTS, source="/etc/postfix/master.cf"))
    for name, text in units.units.items():
        text.encode("utf-8")  # every unit is UTF-8
        assert "\udcfc" not in text, name
    smtp = units.units["postfix-default-smtp-inet@.service"]
    assert _exec_start(smtp).endswith(" -o syslog_name=postfix/m\\xfcnchen")
    service = next(s for s in units.services if s.service == "smtp" and s.type == "inet")
    assert service.master_argv[-2:] == ["-o", "syslog_name=postfix/m\udcfcnchen"]  # the bytes master(8) passes


def test_an_option_that_becomes_a_path_names_the_line() -> None:
    # postlogd's ReadWritePaths= (not unescaped by systemd): refused with the entry's line, not written.
    text = TEXT.replace("1       postlogd\n", "1       postlogd -o maillog_file=/var/log/m\udcfcll/postfix.log\n")
    with pytest.raises(MasterCfError) as info:
        build_units(text, Instance.from_params(FACTS, source="/etc/postfix/master.cf"))
    assert info.value.line == 81 and "m\\xfcll" in str(info.value) and "maillog_file" in str(info.value)


def test_classic_units() -> None:
    units = build_classic_units(TEXT, dict(FACTS, config_directory="/etc/postfix-m\udcfc"))
    text = units.units[units.instance.unit]
    text.encode("utf-8")
    assert "ExecStart=/usr/sbin/postfix -c /etc/postfix-m\\xfc start" in text
    assert "Description=Postfix mail system, instance - (/etc/postfix-m\\xfc, master mode" in text


# --------------------------------------------------------------------------- the generator


class Host:
    """A generator run in a temporary directory: the fixture as master.cf, postconf faked."""

    def __init__(self, tmp: Path, master: bytes = RAW) -> None:
        self.etc = tmp / "etc-postfix"
        self.etc.mkdir()
        (self.etc / "master.cf").write_bytes(master)
        self.conf, self.run, self.state, self.out, self.early = (tmp / n for n in ("conf", "run", "state", "out", "early"))
        self.conf.mkdir()
        (self.conf / "default.conf").write_text(f"config_directory = {self.etc}\n")
        facts = dict(FACTS, config_directory=str(self.etc), smtpd_banner="$myhostname ESMTP Gr\udcfc\udcdfe")
        (tmp / "facts").write_bytes("".join(f"{k} = {v}\n" for k, v in facts.items()).encode("utf-8", "surrogateescape"))
        self.postconf = tmp / "postconf"
        self.postconf.write_text(f"#!/bin/sh\ncat {tmp / 'facts'}\n")
        self.postconf.chmod(0o755)

    def generate(self) -> int:
        return _masterless_generator.generate(str(self.out), str(self.early), conf_dir=str(self.conf), run_dir=str(self.run),
                                              state_dir=str(self.state), postconf=str(self.postconf))


def test_postconf_output_keeps_bytes(tmp_path: Path) -> None:
    host = Host(tmp_path)
    facts = _masterless_generator.postconf_facts(str(host.etc), (), str(host.postconf))
    assert facts["smtpd_banner"] == "$myhostname ESMTP Gr\udcfc\udcdfe"


@needs_postfix
def test_generator_builds_and_keeps_the_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = Host(tmp_path)
    assert host.generate() == 0, capsys.readouterr().err
    unit = (host.out / "postfix-default-smtp-inet@.service").read_bytes()
    assert b" -o syslog_name=postfix/m\\xfcnchen\n" in unit
    assert "ExecStart=/bin/true" in (host.out / "postfix-default-config-error.service").read_text()  # the stub
    # The kept copy holds master.cf's bytes; an unchanged master.cf reuses it without mapping.
    saved = (host.run / "default" / "units.set").read_bytes()
    assert RAW in saved
    files = _masterless_generator.load_set(str(host.run / "default" / "units.set"))
    assert TEXT in files["@inputs"]
    assert host.generate() == 0
    assert (host.out / "postfix-default-smtp-inet@.service").read_bytes() == unit


@needs_postfix
def test_crlf_master_cf_set_reloads(tmp_path: Path) -> None:
    host = Host(tmp_path, RAW.replace(b"\n", b"\r\n"))
    assert host.generate() == 0
    files = _masterless_generator.load_set(str(host.run / "default" / "units.set"))
    assert "\r\n" in files["@inputs"] and files == _masterless_generator.load_set(str(host.run / "default" / "units.set"))


@needs_postfix
def test_unmappable_without_a_good_set_fails_loudly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = Host(tmp_path, RAW + b"m\xfcller unix - n n - - pipe argv=/bin/cat\n")
    assert host.generate() == 1
    err = capsys.readouterr().err
    assert "master.cf line 140" in err and "field 'service' is 'm\\xfcller'" in err and "not started" in err
    # No daemon, no listener: a target that requires a failing unit, and master(8)'s unit masked.
    assert sorted(p.name for p in host.out.iterdir()) == ["multi-user.target.wants", "postfix-default-config-error.service",
                                                          "postfix-default.target"]
    target = (host.out / "postfix-default.target").read_text()
    assert "Requires=postfix-default-config-error.service" in target
    error = (host.out / "postfix-default-config-error.service").read_text()
    assert "master.cf line 140: field \\'service\\' is \\'m\\\\xfcller\\'" in error
    assert "ExecStart=/bin/false" in error and "CollectMode=inactive-or-failed" in error
    assert os.readlink(host.out / "multi-user.target.wants" / "postfix-default.target") == "../postfix-default.target"
    assert [p.name for p in host.early.iterdir()] == ["postfix@-.service"]


@needs_postfix
def test_unmappable_with_a_good_set_keeps_it_and_fails_a_unit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = Host(tmp_path)
    assert host.generate() == 0
    (host.etc / "master.cf").write_bytes(RAW + b"m\xfcller unix - n n - - pipe argv=/bin/cat\n")
    for path in sorted(host.out.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
    assert host.generate() == 1
    assert "keeping the last good unit set" in capsys.readouterr().err
    assert (host.out / "postfix-default-smtp-inet.socket").is_file()
    assert "Requires=postfix-default-config-error" not in (host.out / "postfix-default.target").read_text()
    link = host.out / "multi-user.target.wants" / "postfix-default-config-error.service"
    assert os.readlink(link) == "../postfix-default-config-error.service"
    assert "ExecStart=/bin/false" in (host.out / "postfix-default-config-error.service").read_text()


def test_filters() -> None:
    # A play that reads master.cf with lookup('file') gets Ansible's surrogateescape text.
    from ansible_collections.mailfleet.postfix.plugins.filter.master_cf import FilterModule as Parse
    from ansible_collections.mailfleet.postfix.plugins.filter.master_cf_chroot_plan import FilterModule as Plan
    from ansible_collections.mailfleet.postfix.plugins.filter.master_cf_units import FilterModule as Units

    parse = Parse().filters()
    assert parse["master_cf_render"](parse["master_cf_parse"](TEXT)) == TEXT
    units = Units().filters()["master_cf_units"](TEXT)
    assert " -o syslog_name=postfix/m\\xfcnchen\n" in units["postfix-default-smtp-inet@.service"]
    assert Plan().filters()["master_cf_chroot_plan"](TEXT, {})
