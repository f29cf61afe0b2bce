"""Daemons without IP (IPAddressDeny=any) reach the servers of their own lookup tables."""

from __future__ import annotations

from typing import Optional

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _masterless_generator
from ansible_collections.mailfleet.postfix.plugins.module_utils._masterless_units import Instance, UnitSet, build_units
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_semantics import DAEMONS
from ansible_collections.mailfleet.postfix.plugins.module_utils._systemd_sandbox import PROFILES, TABLE_PARAMS, table_network


def build(text: str, **facts: object) -> UnitSet:
    return build_units(text, Instance(**facts), resolver=lambda h: ["127.0.0.1"], port_resolver=lambda p: 25)


def ip_lines(units: UnitSet, stem: str) -> list[str]:
    unit = next(text for name, text in units.units.items() if f"-{stem}-" in name and name.endswith(".service"))
    return [line for line in unit.splitlines() if line.startswith("IPAddress")]


@pytest.mark.parametrize(("values", "expected"), [
    ([""], None),
    (["hash:/etc/postfix/vmailbox", "lmdb:/x, cdb:/y"], None),
    (["proxy:mysql:/etc/postfix/mysql.cf"], None),  # proxymap does the lookup
    (["socketmap:unix:/run/sm.sock:name"], None),
    (["tcp:127.0.0.1:9000"], ["127.0.0.1"]),
    (["tcp:[::1]:9000", "socketmap:inet:192.0.2.5:8000:virtual"], ["::1", "192.0.2.5"]),
    (["tcp:localhost:9000"], ["localhost"]),
    (["tcp:maps.example:9000"], []),
    (["mysql:/etc/postfix/mysql-virtual.cf"], []),
    (["ldap:/etc/postfix/ldap.cf"], []),
    (["memcache:/etc/postfix/verify-memcache.cf"], []),
    (["pipemap:{tcp:127.0.0.1:1, pgsql:/etc/postfix/pg.cf}"], []),
    (["unionmap:{hash:/a, tcp:127.0.0.1:2}"], ["127.0.0.1"]),
    (["$my_ldap_maps"], []),  # an -o reference is not expanded: it may name any table
    (["hash:/a ${extra_maps}"], []),
])
def test_table_network(values: list[str], expected: Optional[list[str]]) -> None:
    assert table_network(values) == expected


def test_every_daemon_without_ip_has_a_decision() -> None:
    """A daemon added to a kind without IP must say which of its parameters are tables."""
    without_ip = {name for name, d in DAEMONS.items() if not PROFILES[d.kind].ip}
    assert {"virtual", "verify"} <= without_ip and set(TABLE_PARAMS) <= without_ip


def test_the_generator_asks_postconf_for_them() -> None:
    assert {p for params in TABLE_PARAMS.values() for p in params} <= set(_masterless_generator.FACT_PARAMS)


def test_virtual_without_network_tables_is_unchanged() -> None:
    units = build("virtual unix - n n - - virtual\n", virtual_mailbox_maps="hash:/etc/postfix/vmailbox")
    assert ip_lines(units, "virtual") == ["IPAddressDeny=any"]


def test_virtual_with_a_tcp_table_on_a_literal_address() -> None:
    units = build("virtual unix - n n - - virtual\n", virtual_mailbox_maps="tcp:127.0.0.1:9000")
    assert ip_lines(units, "virtual") == ["IPAddressDeny=any", "IPAddressAllow=127.0.0.1"]


def test_virtual_with_mysql_has_no_address_filter() -> None:
    units = build("virtual unix - n n - - virtual\n", virtual_uid_maps="mysql:/etc/postfix/uid.cf")
    assert ip_lines(units, "virtual") == []


def test_an_o_override_counts_and_replaces_main_cf() -> None:
    units = build("virtual unix - n n - - virtual -o virtual_mailbox_maps=hash:/x\n",
                  virtual_mailbox_maps="ldap:/etc/postfix/ldap.cf")
    assert ip_lines(units, "virtual") == ["IPAddressDeny=any"]
    units = build("verify unix - - n - 1 verify -o address_verify_map=memcache:/etc/postfix/m.cf\n")
    assert ip_lines(units, "verify") == []


def test_an_o_reference_to_a_parameter_lifts_the_filter() -> None:
    units = build("virtual unix - n n - - virtual -o virtual_mailbox_maps=$my_ldap_maps\n")
    assert ip_lines(units, "virtual") == []


def test_verify_with_a_socketmap_cache() -> None:
    units = build("verify unix - - n - 1 verify\n", address_verify_map="socketmap:inet:[::1]:7000:verify")
    assert ip_lines(units, "verify") == ["IPAddressDeny=any", "IPAddressAllow=::1"]


def test_other_daemons_keep_their_filter() -> None:
    """main.cf's virtual tables are virtual(8)'s: qmgr and pickup stay without IP."""
    units = build("pickup unix n - n 60 1 pickup\nqmgr unix n - n 300 1 qmgr\n",
                  virtual_mailbox_maps="mysql:/etc/postfix/m.cf")
    assert ip_lines(units, "pickup") == ["IPAddressDeny=any"] and ip_lines(units, "qmgr") == ["IPAddressDeny=any"]
