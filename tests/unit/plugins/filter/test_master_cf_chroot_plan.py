"""master_cf_chroot_plan filter: an adapter over _classic_chroot.plan_jail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.mailfleet.postfix.plugins.filter.master_cf_chroot_plan import (
    FilterModule,
    master_cf_chroot_plan,
)
from ansible_collections.mailfleet.postfix.plugins.module_utils._classic_chroot import DEBIAN12_AMD64
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import MasterCf

ROOT = Path(__file__).resolve().parents[4]
DEBIAN = (ROOT / "tests/unit/plugins/module_utils/fixtures/debian-master.cf").read_text()
MAIN_TEXT = "compatibility_level = 3.6\nsmtp_tls_CApath=/etc/ssl/certs\nsmtp_tls_security_level=may\n"


def test_registered() -> None:
    assert FilterModule().filters()["master_cf_chroot_plan"] is master_cf_chroot_plan


def test_debian_default_items_carry_reasons() -> None:
    items = {i["path"]: i for i in master_cf_chroot_plan(DEBIAN, MAIN_TEXT)}
    for path in ("etc/resolv.conf", "etc/services", "etc/hosts", "etc/nsswitch.conf",
                 "lib/x86_64-linux-gnu/libnss_files.so.2", "lib/x86_64-linux-gnu/libnss_dns.so.2"):
        reasons = items[path]["reasons"]
        assert reasons and all(r["entry"] and r["line"] and r["text"] for r in reasons), path
        assert reasons[0]["summary"].startswith(f"{reasons[0]['entry']} (master.cf line {reasons[0]['line']}")
    assert items["etc/ssl/certs"]["kind"] == "certs"


def test_all_n_is_empty() -> None:
    doc = MasterCf.parse(DEBIAN)
    for entry in doc.entries(enabled=True):
        entry.set_field("chroot", "n")
    assert master_cf_chroot_plan(doc.render()) == []
    assert master_cf_chroot_plan(doc.to_list(), {"compatibility_level": "0"}) == []


def test_text_list_and_main_forms_agree() -> None:
    from_text = master_cf_chroot_plan(DEBIAN, MAIN_TEXT)
    from_list = master_cf_chroot_plan(MasterCf.parse(DEBIAN).to_list(), {
        "compatibility_level": "3.6", "smtp_tls_CApath": "/etc/ssl/certs", "smtp_tls_security_level": "may"})
    assert from_text == from_list


def test_host_facts_and_extra_files() -> None:
    host = DEBIAN12_AMD64.to_dict()
    host["files"].append("/etc/mailname")
    host["lib_dirs"] = {"/usr/lib64": ["libgcc_s.so.1", "libnss_files.so.2"]}
    items = master_cf_chroot_plan("pickup unix n - y 60 1 pickup\n", None, host, ["/etc/mailname"])
    assert [i["path"] for i in items] == ["etc/mailname", "usr/lib64/libgcc_s.so.1"]


@pytest.mark.parametrize(("args", "match"), [
    ((42,), "expects master.cf text"),
    ((None,), "expects master.cf text"),
    (("", 42), "'main' must be"),
    (("", None, "x"), "'host' must be"),
    (("", None, None, "/etc/x"), "'extra_files' must be a list"),
])
def test_wrong_input_types(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(AnsibleFilterError, match=match):
        master_cf_chroot_plan(*args)


@pytest.mark.parametrize(("args", "match"), [
    (("smtp inet n - y\n",), "line 1"),
    (("smtp inet n - y - - smtpd\n", "no equals sign\n"), "main.cf line 1"),
    (("smtp inet n - y - - smtpd\n", None, {"lib_dirs": {}, "libc_version": "2.17"}), r"cannot locate libnss_dns\.so\.2 for glibc 2\.17"),
    (("smtp inet n - y - - smtpd\n", None, {"colour": 1}), "unknown host facts"),
    (("pickup unix n - y 60 1 pickup\n", None, None, ["relative"]), "absolute"),
])
def test_errors_become_filter_errors(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(AnsibleFilterError, match=match):
        master_cf_chroot_plan(*args)
