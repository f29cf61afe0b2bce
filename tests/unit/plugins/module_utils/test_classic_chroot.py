"""The jail planner: what a chrooted daemon reads after chroot, and why."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils._classic_chroot import (
    DEBIAN12_AMD64,
    ChrootPlanError,
    HostFacts,
    Params,
    Plan,
    nss_sources,
    plan_jail,
    safe_jail_path,
)
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import MasterCf

FIXTURES = Path(__file__).parent / "fixtures"
DEBIAN = (FIXTURES / "debian-master.cf").read_text()
CORPUS = Path(__file__).resolve().parents[4].parent / "shared" / "corpus" / "valid"
CORPUS_FILES = sorted(CORPUS.glob("*.cf")) if CORPUS.is_dir() else []
# Debian 12's generated main.cf, the parts that matter here.
DEBIAN_MAIN = {
    "compatibility_level": "3.6",
    "smtp_tls_CApath": "/etc/ssl/certs",
    "smtp_tls_security_level": "may",
    "smtpd_tls_security_level": "may",
}
LIB = "lib/x86_64-linux-gnu/"


def paths(plan: Plan) -> list[str]:
    return [item.path for item in plan.items]


def all_n(text: str) -> str:
    doc = MasterCf.parse(text)
    for entry in doc.entries(enabled=True):
        entry.set_field("chroot", "n")
    return doc.render()


def test_debian_default_lists_lookup_files_and_nss_modules_with_reasons() -> None:
    plan = plan_jail(DEBIAN, DEBIAN_MAIN)
    for path in ("etc/resolv.conf", "etc/services", "etc/hosts", "etc/nsswitch.conf", "etc/host.conf",
                 "etc/localtime", LIB + "libnss_files.so.2", LIB + "libnss_dns.so.2", LIB + "libresolv.so.2",
                 LIB + "libgcc_s.so.1", "etc/ssl/certs"):
        item = plan.item(path)
        assert item is not None, path
        assert item.reasons, path
        for reason in item.reasons:
            assert reason.entry and reason.line > 0 and reason.text, (path, reason)
    hosts = plan.item("etc/hosts")
    assert hosts is not None
    assert hosts.reasons[0].entry == "smtp/inet" and hosts.reasons[0].line == 1
    assert hosts.reasons[0].parameter == "smtpd_peername_lookup"
    assert "hosts: files dns" in hosts.reasons[0].text
    certs = plan.item("etc/ssl/certs")
    assert certs is not None and certs.kind == "certs" and certs.source == "/etc/ssl/certs"
    assert {r.entry for r in certs.reasons} == {"smtp/unix", "relay/unix"}
    assert plan.warnings == []
    assert "etc/passwd" not in paths(plan)  # Debian's local_recipient_maps goes through proxy:
    assert "dev/log" not in paths(plan)  # journald


def test_debian_default_chrooted_entries() -> None:
    plan = plan_jail(DEBIAN, DEBIAN_MAIN)
    chrooted = [c.entry for c in plan.chrooted]
    assert "smtp/inet" in chrooted and "relay/unix" in chrooted
    assert not {"qmgr/unix", "local/unix", "virtual/unix", "proxymap/unix", "postlog/unix-dgram"} & set(chrooted)


def test_every_chroot_n_gives_an_empty_plan() -> None:
    plan = plan_jail(all_n(DEBIAN), DEBIAN_MAIN)
    assert plan.items == [] and plan.chrooted == [] and plan.warnings == []


@pytest.mark.parametrize(("level", "chrooted"), [("0", True), ("", True), ("1", False), ("3.6", False)])
def test_dash_follows_compatibility_level(level: str, chrooted: bool) -> None:
    main = {"compatibility_level": level} if level else {}
    plan = plan_jail("smtp unix - - - - - smtp\n", main)
    assert bool(plan.chrooted) is chrooted
    assert bool(plan.items) is chrooted


def test_master_service_disable_and_inet_protocols() -> None:
    text = "smtp inet n - y - - smtpd\n"
    assert plan_jail(text, {"master_service_disable": "inet"}).items == []
    assert plan_jail(text, {"master_service_disable": "smtp.inet"}).items == []
    assert plan_jail(text, {"inet_protocols": ""}).items == []
    assert plan_jail(text, {"master_service_disable": "!smtp.inet, inet"}).items  # first match wins


def test_queue_only_daemons_need_no_lookups() -> None:
    plan = plan_jail("pickup unix n - y 60 1 pickup\nqmgr unix n - y 300 1 qmgr\n", {})
    assert paths(plan) == [LIB + "libgcc_s.so.1"]


def test_option_override_per_entry() -> None:
    text = ("smtp unix - - y - - smtp\n"
            "relay unix - - y - - smtp\n  -o smtp_tls_CApath=/etc/relay-cas\n"
            "plain unix - - y - - smtp\n  -o smtp_tls_security_level=none\n")
    host = replace(DEBIAN12_AMD64, files=DEBIAN12_AMD64.files | {"/etc/relay-cas"})
    plan = plan_jail(text, DEBIAN_MAIN, host)
    certs = plan.item("etc/ssl/certs")
    relay = plan.item("etc/relay-cas")
    assert certs is not None and [r.entry for r in certs.reasons] == ["smtp/unix"]
    assert relay is not None and relay.reasons[0].entry == "relay/unix"
    assert relay.reasons[0].parameter == "smtp_tls_CApath"
    assert "-o smtp_tls_CApath" in relay.reasons[0].text


def test_capath_needs_tls_and_an_existing_directory() -> None:
    text = "smtp unix - - y - - smtp\nsmtp inet n - y - - smtpd\n"
    assert plan_jail(text, {"smtp_tls_CApath": "/etc/ssl/certs"}).item("etc/ssl/certs") is None
    plan = plan_jail(text, {"smtpd_tls_CApath": "/etc/ssl/certs", "smtpd_use_tls": "yes"})
    item = plan.item("etc/ssl/certs")
    assert item is not None and item.reasons[0].entry == "smtp/inet"
    assert "smtpd_use_tls" in item.reasons[0].text
    missing = plan_jail(text, {"smtp_tls_CApath": "/nonexistent", "smtp_tls_security_level": "may"})
    assert missing.item("nonexistent") is None
    assert any("/nonexistent does not exist" in w for w in missing.warnings)


def test_capath_with_references_and_inside_the_queue() -> None:
    text = "smtp unix - - y - - smtp\n"
    main = {"smtp_tls_security_level": "may", "cadir": "/etc/ssl/certs", "smtp_tls_CApath": "${cadir}"}
    assert plan_jail(text, main).item("etc/ssl/certs") is not None
    unknown = plan_jail(text, {"smtp_tls_security_level": "may", "smtp_tls_CApath": "$nowhere/certs"})
    assert any("nowhere" in w for w in unknown.warnings)
    inside = plan_jail(text, {"smtp_tls_security_level": "may", "smtp_tls_CApath": "/var/spool/postfix/certs"})
    assert inside.item("var/spool/postfix/certs") is None and inside.warnings == []


def test_lmtp_and_tlsproxy_use_their_own_parameters() -> None:
    text = "lmtp unix - - y - - lmtp\ntlsproxy unix - - y - 0 tlsproxy\n"
    host = replace(DEBIAN12_AMD64, files=DEBIAN12_AMD64.files | {"/etc/lmtp-cas", "/etc/in-cas"})
    main = {"lmtp_tls_security_level": "encrypt", "lmtp_tls_CApath": "/etc/lmtp-cas",
            "smtpd_tls_security_level": "may", "smtpd_tls_CApath": "/etc/in-cas"}
    plan = plan_jail(text, main, host)
    lmtp, proxy = plan.item("etc/lmtp-cas"), plan.item("etc/in-cas")
    assert lmtp is not None and lmtp.reasons[0].entry == "lmtp/unix"
    assert proxy is not None and proxy.reasons[0].parameter == "tlsproxy_tls_CApath"


def test_native_lookups_and_disabled_dns() -> None:
    native = plan_jail("smtp unix - - y - - smtp\n", {"smtp_host_lookup": "native"})
    hosts = native.item("etc/hosts")
    assert hosts is not None and hosts.reasons[0].parameter == "smtp_host_lookup"
    dns_only = plan_jail("smtp unix - - y - - smtp\n", {})
    assert dns_only.item("etc/hosts") is None
    resolv = dns_only.item("etc/resolv.conf")
    assert resolv is not None and "DNS" in resolv.reasons[0].text
    off = plan_jail("smtp unix - - y - - smtp\n", {"smtp_dns_support_level": "disabled"})
    assert off.item("etc/hosts") is not None
    assert off.item("etc/hosts").reasons[0].parameter == "smtp_dns_support_level"  # type: ignore[union-attr]


def test_passwd_only_without_proxy() -> None:
    text = "smtp inet n - y - - smtpd\n"
    assert plan_jail(text, {}).item("etc/passwd") is None
    plan = plan_jail(text, {"local_recipient_maps": "unix:passwd.byname $alias_maps"})
    item = plan.item("etc/passwd")
    assert item is not None and item.kind == "passwd"
    assert item.reasons[0].parameter == "local_recipient_maps"
    override = plan_jail("smtp inet n - y - - smtpd\n  -o local_recipient_maps=unix:passwd.byname\n", {})
    assert override.item("etc/passwd") is not None


def test_syslog_socket_and_postlog() -> None:
    host = replace(DEBIAN12_AMD64, syslog="socket")
    plan = plan_jail("pickup unix n - y 60 1 pickup\n", {}, host)
    item = plan.item("dev/log")
    assert item is not None and item.kind == "socket"
    with_file = plan_jail("pickup unix n - y 60 1 pickup\n", {"maillog_file": "/var/log/postfix.log"}, host)
    assert with_file.item("dev/log") is None
    assert any("postlog" in w for w in with_file.warnings)


def test_missing_library_is_named() -> None:
    old = replace(DEBIAN12_AMD64, libc_version="2.31",
                  lib_dirs=(("/lib/x86_64-linux-gnu", ("libgcc_s.so.1", "libnss_dns.so.2", "libresolv.so.2")),))
    with pytest.raises(ChrootPlanError, match=r"cannot locate libnss_files\.so\.2 for glibc 2\.31.*smtp/inet"):
        plan_jail(DEBIAN, DEBIAN_MAIN, old)
    no_gcc = replace(DEBIAN12_AMD64, lib_dirs=(("/lib/x86_64-linux-gnu", ("libnss_files.so.2",)),))
    with pytest.raises(ChrootPlanError, match=r"cannot locate libgcc_s\.so\.1 .*searched /lib/x86_64-linux-gnu"):
        plan_jail(DEBIAN, DEBIAN_MAIN, no_gcc)


def test_builtin_modules_are_optional_on_new_glibc() -> None:
    host = replace(DEBIAN12_AMD64, lib_dirs=(("/usr/lib64", ("libgcc_s.so.1",)),))
    plan = plan_jail(DEBIAN, DEBIAN_MAIN, host)
    assert "usr/lib64/libgcc_s.so.1" in paths(plan)
    assert not [p for p in paths(plan) if "libnss" in p]


def test_non_linux_still_plans_etc_files() -> None:
    host = HostFacts(system="FreeBSD", libc="", libc_version="", files=DEBIAN12_AMD64.files)
    plan = plan_jail(DEBIAN, DEBIAN_MAIN, host)
    assert {"etc/hosts", "etc/resolv.conf", "etc/services"} <= set(paths(plan))
    assert not [p for p in paths(plan) if p.startswith("lib")]
    assert any("FreeBSD" in w for w in plan.warnings)


def test_musl_reads_files_directly() -> None:
    host = HostFacts(libc="musl", libc_version="1.2", files=DEBIAN12_AMD64.files, nsswitch=None)
    plan = plan_jail(DEBIAN, DEBIAN_MAIN, host)
    assert "etc/nsswitch.conf" not in paths(plan)
    assert {"etc/hosts", "etc/resolv.conf", "etc/services"} <= set(paths(plan))
    assert not [p for p in paths(plan) if p.startswith("lib")]


def test_nsswitch_sources() -> None:
    text = "passwd: files\nhosts: files mdns4_minimal [NOTFOUND=return] resolve [!UNAVAIL=return] dns\n"
    assert nss_sources(text, "hosts") == ("files", "mdns4_minimal", "resolve", "dns")
    assert nss_sources(text, "services") == ("files",)
    assert nss_sources(None, "hosts") == ("dns", "files")


def test_socket_backed_sources_warn_and_mdns_config() -> None:
    libs = DEBIAN12_AMD64.lib_dirs[0][1] + ("libnss_mdns4_minimal.so.2", "libnss_resolve.so.2")
    host = replace(DEBIAN12_AMD64, lib_dirs=(("/lib/x86_64-linux-gnu", libs),),
                   files=DEBIAN12_AMD64.files | {"/etc/nss_mdns.config"},
                   nsswitch="hosts: files mdns4_minimal [NOTFOUND=return] resolve [!UNAVAIL=return] dns\n")
    plan = plan_jail("smtp inet n - y - - smtpd\n", {}, host)
    assert {"etc/nss_mdns.config", LIB + "libnss_mdns4_minimal.so.2", LIB + "libnss_resolve.so.2"} <= set(paths(plan))
    assert any("resolve" in w and "varlink" in w for w in plan.warnings)


def test_uninstalled_source_is_a_note_not_an_error() -> None:
    plan = plan_jail(DEBIAN, DEBIAN_MAIN)  # services: db files, libnss_db not installed
    assert any("libnss_db.so.2 is not installed" in n for n in plan.notes)


def test_library_dependencies_are_followed() -> None:
    libs = DEBIAN12_AMD64.lib_dirs[0][1] + ("libnss_systemd.so.2", "libcap.so.2")
    host = replace(DEBIAN12_AMD64, lib_dirs=(("/lib/x86_64-linux-gnu", libs),),
                   nsswitch="passwd: files systemd\nhosts: files dns\n",
                   needed={"libnss_systemd.so.2": ("libc.so.6", "libcap.so.2", "libm.so.6")})
    plan = plan_jail("smtp inet n - y - - smtpd\n", {"local_recipient_maps": "unix:passwd.byname"}, host)
    assert LIB + "libcap.so.2" in paths(plan)
    assert not [p for p in paths(plan) if "libc.so" in p]
    assert any("libm.so.6" in n for n in plan.notes)


def test_milters_of_cleanup() -> None:
    plan = plan_jail("cleanup unix n - y - 0 cleanup\n", {"non_smtpd_milters": "inet:milter.example:8891, inet:127.0.0.1:1"})
    hosts = plan.item("etc/hosts")
    assert hosts is not None and "milter.example" in hosts.reasons[0].text
    assert plan_jail("cleanup unix n - y - 0 cleanup\n", {"non_smtpd_milters": "inet:[::1]:8891"}).item("etc/hosts") is None


def test_unknown_daemon_gets_everything_and_delivery_agents_warn() -> None:
    plan = plan_jail("custom unix - n y - - my-filter\nlocal unix - n y - - local\n", {})
    hosts = plan.item("etc/hosts")
    assert hosts is not None and any("unknown daemon 'my-filter'" in r.text for r in hosts.reasons)
    assert any("local runs chrooted" in w for w in plan.warnings)


def test_extra_files() -> None:
    host = replace(DEBIAN12_AMD64, files=DEBIAN12_AMD64.files | {"/etc/mailname"})
    plan = plan_jail("pickup unix n - y 60 1 pickup\n", {}, host, extra_files=["/etc/mailname", "/etc/nope"])
    item = plan.item("etc/mailname")
    assert item is not None and item.reasons[0].text == "listed in extra_files"
    assert any("/etc/nope" in w for w in plan.warnings)
    with pytest.raises(ChrootPlanError, match="absolute"):
        plan_jail("pickup unix n - y 60 1 pickup\n", {}, host, extra_files=["etc/x"])
    with pytest.raises(ChrootPlanError, match="maildrop"):
        plan_jail("pickup unix n - y 60 1 pickup\n", {}, host, extra_files=["/maildrop/x"])
    assert plan_jail(all_n(DEBIAN), {}, host, extra_files=["/etc/mailname"]).items == []


def test_parsed_entries_and_text_agree() -> None:
    from_text = plan_jail(DEBIAN, DEBIAN_MAIN).to_dict()
    from_list = plan_jail(MasterCf.parse(DEBIAN).to_list(), DEBIAN_MAIN).to_dict()
    assert from_text == from_list


def test_bad_master_cf_is_a_plan_error() -> None:
    with pytest.raises(ChrootPlanError, match="line 1"):
        plan_jail("smtp inet n - y\n", {})
    with pytest.raises(ChrootPlanError, match="mapping"):
        plan_jail([42], {})  # type: ignore[list-item]


def test_params_expansion() -> None:
    params = Params({"a": "$b/x", "b": "${c}", "c": "/etc", "flag": "yes"}, {"o": "${flag?on}${nothing:off}"})
    assert params.get("a") == "/etc/x"
    assert params.get("o") == "onoff"
    assert params.expand("missing") == ("", [])
    assert Params({"loop": "$loop"}).get("loop").startswith("$loop")


def test_host_facts_round_trip_and_validation() -> None:
    assert HostFacts.from_dict(DEBIAN12_AMD64.to_dict()) == DEBIAN12_AMD64
    with pytest.raises(ChrootPlanError, match="unknown host facts: color"):
        HostFacts.from_dict({"color": "blue"})
    with pytest.raises(ChrootPlanError, match="syslog"):
        HostFacts.from_dict({"syslog": "carrier-pigeon"})


@pytest.mark.parametrize("bad", ["/etc/x", "../etc", "etc/../../x", "maildrop/x", "private/smtp", "."])
def test_safe_jail_path_refuses(bad: str) -> None:
    with pytest.raises(ChrootPlanError):
        safe_jail_path(bad)


def test_safe_jail_path_normalizes() -> None:
    assert safe_jail_path("etc//resolv.conf") == "etc/resolv.conf"


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.name for p in CORPUS_FILES])
def test_corpus_plans(path: Path) -> None:
    text = path.read_text(errors="replace")
    for level in ("0", "3.6"):
        plan = plan_jail(text, {**DEBIAN_MAIN, "compatibility_level": level})
        for item in plan.items:
            safe_jail_path(item.path)
            assert item.reasons
        if not plan.chrooted:
            assert plan.items == []
