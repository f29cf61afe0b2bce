"""master(8)'s reading of master.cf, and parity of the modes that consume it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _postfix_semantics
from ansible_collections.mailfleet.postfix.plugins.module_utils._classic_chroot import plan_jail, running
from ansible_collections.mailfleet.postfix.plugins.module_utils._classic_unit import survey
from ansible_collections.mailfleet.postfix.plugins.module_utils._masterless_units import Instance, build_units
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_instances import configured_listeners
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import MasterCf, MasterCfError

FIXTURES = Path(__file__).parent / "fixtures"
CORPUS = Path(__file__).resolve().parents[4].parent / "shared" / "corpus" / "valid"
FILES = [FIXTURES / "debian-master.cf"] + (sorted(CORPUS.glob("*.cf")) if CORPUS.is_dir() else [])
HOSTS = {"localhost": ["127.0.0.1", "::1"]}


def resolver(host: str) -> list[str]:
    if host not in HOSTS:
        raise OSError("Name or service not known")
    return HOSTS[host]


def ports(name: str) -> int:
    raise OSError(f"service {name} not in this test's services database")


def entries(text: str) -> list[Any]:
    return MasterCf.parse(text).entries(enabled=True)


# --------------------------------------------------------------------------- facts


@pytest.mark.parametrize(("text", "below_1"), [("0", True), ("1", False), ("3.6", False), ("0.9", True),
                                               ("3.10.2", False), ("10", False),
                                               (" 3", False), ("+0", True)])
def test_chroot_default_follows_compatibility_level(text: str, below_1: bool) -> None:
    assert _postfix_semantics.chroot_default(_postfix_semantics.Facts(compatibility_level=text)) is below_1


@pytest.mark.parametrize("text", ["", "x", "3.x", "3.6.1.2", "-1", "3.", "٣", "3.+-1"])
def test_compatibility_level_postfix_cannot_parse(text: str) -> None:
    """compat_level_from_string(): master(8) exits with 'malformed compatibility level syntax'."""
    with pytest.raises(MasterCfError, match="compatibility_level.*master\\(8\\) refuses to start"):
        _postfix_semantics.chroot_default(_postfix_semantics.Facts(compatibility_level=text))


@pytest.mark.parametrize(("text", "families"), [("all", [4, 6]), ("ipv4", [4]), ("ipv6, ipv4", [4, 6]), ("", [])])
def test_inet_protocols(text: str, families: list[int]) -> None:
    assert _postfix_semantics.inet_families(_postfix_semantics.Facts(inet_protocols=text)) == families


@pytest.mark.parametrize("text", ["bogus", "IPv4", "ipv4 ipv5"])
def test_inet_protocols_postfix_refuses(text: str) -> None:
    """name_mask() without NAME_MASK_ANY_CASE: an unknown or mis-cased word is fatal."""
    with pytest.raises(MasterCfError, match="inet_protocols"):
        _postfix_semantics.inet_families(_postfix_semantics.Facts(inet_protocols=text))


# --------------------------------------------------------------------------- which entries run


@pytest.mark.parametrize(("setting", "service", "kind", "expected"), [
    ("", "smtp", "inet", False),
    ("inet", "smtp", "inet", True),
    ("INET", "smtp", "inet", True),  # strcasecmp
    ("smtp/inet", "smtp", "inet", True),
    ("Smtp/Inet", "smtp", "inet", True),
    ("smtp.inet", "smtp", "inet", True),  # match_service_compat(): the old name.type form
    ("127.0.0.1:smtp.inet", "127.0.0.1:smtp", "inet", True),
    ("smtp/inet", "submission", "inet", False),
    ("!smtp/inet, inet", "smtp", "inet", False),  # the first match wins
    ("!!smtp/inet", "smtp", "inet", True),
    ("inet, !smtp/inet", "smtp", "inet", True),
    ("unix", "smtp", "inet", False),
])
def test_master_service_disable(setting: str, service: str, kind: str, expected: bool) -> None:
    assert _postfix_semantics.disabled_by(service, kind, setting) is expected


def test_the_last_of_duplicates_runs_and_the_warning_names_both_lines() -> None:
    text = ("mailman unix - n n - - pipe argv=/bin/false\n"
            "smtp inet n - y - - smtpd\n"
            "mailman unix - n n - - pipe argv=/bin/true\n")
    run, warnings = _postfix_semantics.running_entries(text, _postfix_semantics.Facts())
    assert [e.first_line for e in run] == [2, 3]
    assert warnings == ["master.cf line 3: duplicate master.cf entry for service 'mailman unix' (also at line 1); "
                        "master(8) uses the last one, line 3, and ignores line 1"]


@pytest.mark.parametrize(("one", "other", "same"), [
    ("smtp inet n - y - - smtpd", "25 inet n - y - - smtpd", True),
    ("127.0.0.1:smtp inet n - y - - smtpd", "127.0.0.1:25 inet n - y - - smtpd", True),
    ("[::1]:25 inet n - y - - smtpd", "[0:0::1]:25 inet n - y - - smtpd", True),
    ("smtp inet n - y - - smtpd", "127.0.0.1:25 inet n - y - - smtpd", False),
    ("x unix - - y - - smtp", "x unix n - y - - smtp", False),  # private/x and public/x
    ("x unix - - y - - smtp", "x fifo - - y - - smtp", False),
])
def test_service_identity_is_masters(one: str, other: str, same: bool) -> None:
    first, second = entries(f"{one}\n{other}\n")
    assert (_postfix_semantics.service_key(first) == _postfix_semantics.service_key(second)) is same


def test_disabled_entries_are_skipped_before_duplicates() -> None:
    text = "smtp inet n - y - - smtpd\n25 inet n - n - - smtpd\n"
    run, warnings = _postfix_semantics.running_entries(text, _postfix_semantics.Facts(master_service_disable="25/inet"))
    assert [e.first_line for e in run] == [1] and warnings == []


# --------------------------------------------------------------------------- listeners


@pytest.mark.parametrize(("text", "clash"), [
    ("smtp inet n - y - - smtpd\n127.0.0.1:25 inet n - y - - smtpd\n", True),  # wildcard covers the family
    ("127.0.0.1:25 inet n - y - - smtpd\n127.0.0.2:25 inet n - y - - smtpd\n", False),
    ("pickup unix n - y 60 1 pickup\npickup fifo n - y 60 1 pickup\n", True),  # one path, two types
])
def test_endpoint_conflicts(text: str, clash: bool) -> None:
    facts = _postfix_semantics.Facts(inet_protocols="ipv4")
    plans = [(e, _postfix_semantics.listener_of(e, facts, resolver, ports)) for e in entries(text)]
    if clash:
        with pytest.raises(MasterCfError, match="line 2: .*two listeners cannot share it"):
            _postfix_semantics.check_conflicts(plans)
    else:
        _postfix_semantics.check_conflicts(plans)


# --------------------------------------------------------------------------- parity of the modes


def _text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "surrogateescape")


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
@pytest.mark.parametrize("level", ["0", "3.6"])
def test_modes_agree_on_services_columns_and_listeners(path: Path, level: str) -> None:
    """Master-less units, the classic unit's survey, the jail plan and the instance module's listeners
    all see the entries master(8) would run, with the same chroot column and the same ports."""
    text = _text(path)
    main = {"compatibility_level": level, "inet_interfaces": "all", "inet_protocols": "all"}
    core, _warnings = _postfix_semantics.services(text, _postfix_semantics.Facts.from_mapping(main), resolver=resolver,
                                                  port_resolver=ports)
    want_lines = [s.entry.first_line for s in core]
    chrooted = {s.entry.first_line for s in core if s.columns.chroot}

    try:
        units = build_units(text, Instance(compatibility_level=level), resolver=resolver, port_resolver=ports)
    except MasterCfError as exc:  # master-less refuses what is not a Postfix daemon: say which
        assert "not a Postfix daemon" in str(exc), exc
    else:
        assert [s.line for s in units.services] == want_lines
        assert {s.line for s in units.services if "-c" in s.master_argv} == chrooted
        for service, plan in zip(core, units.services):
            assert plan.master_argv == _postfix_semantics.master_argv(
                service.entry, Instance(compatibility_level=level), listen_count=len(service.listener.addresses),
                local_only=service.listener.local_only)

    assert [e.first_line for e in running(text, main)[0]] == want_lines
    surveyed = survey(MasterCf.parse(text).entries(enabled=True), main)
    assert {int(where.rsplit(" ", 1)[1]) for where in surveyed.chrooted} == chrooted
    assert {c.line for c in plan_jail(text, main).chrooted} == chrooted
    inet_ports = sorted({int(i[3]) for s in core for i in s.listener.identity if i[0] == "inet"})
    assert sorted({int(lst.port) for lst in configured_listeners(text, main, origin=str(path))
                   if lst.port.isdigit()}) == inet_ports
