# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Modules on a master.cf that is not UTF-8 (a Latin-1 comment and -o value): Postfix reads bytes.

chroot and instance_unit: see test_latin1_master_cf in their own test files (their fixtures).
"""

from __future__ import annotations

from pathlib import Path

from ansible_collections.mailfleet.postfix.plugins.module_utils import _masterless_generator
from ansible_collections.mailfleet.postfix.tests import fixture_files
from ansible_collections.mailfleet.postfix.tests.unit.plugins.modules.postfix_env import make_config_dir, run_module

# env is the fixture, pytestmark the shared skip condition.
from ansible_collections.mailfleet.postfix.tests.unit.plugins.modules.test_systemd_units import (  # noqa: F401  # pylint: disable=unused-import
    ROOT,
    Env,
    env,
    pytestmark,
)

RAW = fixture_files.read(ROOT / "tests/unit/fixtures/master.cf/latin1.cf")


def test_latin1_master_cf_switches_and_is_idempotent(env: Env) -> None:  # noqa: F811 (fixture)
    (env.config / "master.cf").write_bytes(RAW)
    out = env.ok()
    assert out["changed"] and "postfix-default-smtp-inet@.service" in out["units"]
    assert (env.config / "master.cf").read_bytes() == RAW
    # The stored set keeps master.cf's bytes, so the generator can tell that nothing changed.
    assert RAW in env.state_file.read_bytes()
    files, _unused = _masterless_generator.split_record(_masterless_generator.load_set(str(env.state_file)))
    assert " -o syslog_name=postfix/m\\xfcnchen\n" in files["postfix-default-smtp-inet@.service"]
    assert not env.ok()["changed"]


def test_latin1_in_a_refused_place_names_the_line(env: Env) -> None:  # noqa: F811 (fixture)
    (env.config / "master.cf").write_bytes(RAW.replace(b"1       postlogd\n", b"1       postlogd -o maillog_file=/l/m\xfc/x\n"))
    before = env.snapshot()
    out = env.run()
    assert out["failed"] and "line 81" in out["msg"] and "m\\xfc" in out["msg"] and out["line"] == 81
    assert env.snapshot() == before


def test_master_edits_keep_the_bytes(tmp_path: Path) -> None:
    conf = make_config_dir(tmp_path, master="latin1.cf")
    out = run_module("master", {"config_dir": str(conf.path), "service": "pickup", "type": "unix", "wakeup": "120"},
                     tmp=tmp_path)
    assert out["changed"] and not out.get("failed"), out.get("msg")
    assert conf.master.read_bytes() == RAW.replace(b"pickup    unix  n       -       y       60 ",
                                                   b"pickup    unix  n       -       y       120")


def test_master_info_reads_the_bytes(tmp_path: Path) -> None:
    conf = make_config_dir(tmp_path, master="latin1.cf")
    out = run_module("master_info", {"config_dir": str(conf.path)}, tmp=tmp_path)
    assert not out.get("failed"), out.get("msg")
    smtp = next(e for e in out["entries"] if (e["service"], e["type"], e["enabled"]) == ("smtp", "inet", True))
    # Ansible's convention for bytes that are not UTF-8: surrogateescape (to_bytes(errors="surrogate_or_strict")).
    assert smtp["options"]["syslog_name"].encode("utf-8", "surrogateescape") == b"postfix/m\xfcnchen"
