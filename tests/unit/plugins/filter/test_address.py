"""address_scope and mynetworks_entry: the delivery role's "internal address only" rule and mynetworks form."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.mailfleet.postfix.plugins.filter.address import FilterModule, address_scope, mynetworks_entry
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_instances import INTERNAL_SCOPES

SCOPES = {
    "127.0.0.1": "loopback", "127.8.9.10": "loopback", "::1": "loopback", "[::1]": "loopback",
    "10.0.0.1": "private", "172.16.0.1": "private", "172.31.255.254": "private", "192.168.1.1": "private",
    "fd00::25": "unique-local", "fc00::1": "unique-local", "[fd12:3456::1]": "unique-local",
    "::ffff:10.0.0.1": "private", "::ffff:198.51.100.7": "public",
    "100.64.0.1": "shared", "100.127.255.255": "shared",
    "169.254.1.1": "link-local", "fe80::1": "link-local", "fe80::1%eth0": "link-local",
    "0.0.0.0": "unspecified", "::": "unspecified",
    "172.32.0.1": "public", "172.15.255.255": "public", "192.169.0.1": "public", "100.128.0.1": "public",
    "8.8.8.8": "public", "198.51.100.7": "public", "2001:db8::1": "public", "2a00:1450::1": "public",
    "fe00::1": "public",
    "mail.example.com": "name", "all": "name", "*": "name", "": "name", "10.0.0.1 10.0.0.2": "name",
    "10.0.0.0/8": "name", "256.0.0.1": "name", "localhost": "name",
}


@pytest.mark.parametrize(("address", "scope"), SCOPES.items())
def test_address_scope(address: str, scope: str) -> None:
    assert address_scope(address) == scope


def test_only_loopback_rfc1918_and_ula_are_internal() -> None:
    internal = {a for a, s in SCOPES.items() if s in INTERNAL_SCOPES}
    assert "8.8.8.8" not in internal and "100.64.0.1" not in internal and "fe80::1" not in internal
    assert {"10.0.0.1", "fd00::25", "127.0.0.1"} <= internal


@pytest.mark.parametrize(("value", "entry"), [
    ("10.0.0.1", "10.0.0.1/32"),
    ("2001:db8::1", "[2001:db8::1]/128"),
    ("[2001:db8::1]", "[2001:db8::1]/128"),
    ("2001:DB8:0:0::1", "[2001:db8::1]/128"),
    ("fd00::/8", "[fd00::]/8"),
    ("[2001:db8::]/64", "[2001:db8::]/64"),
    ("2001:db8::5/64", "[2001:db8::]/64"),
    ("10.0.0.0/24", "10.0.0.0/24"),
    ("10.0.0.5/24", "10.0.0.0/24"),  # Postfix warns about host bits and does not match them
    ("hash:/etc/postfix/network_table", "hash:/etc/postfix/network_table"),
    ("/etc/postfix/networks", "/etc/postfix/networks"),
    ("mail.example.com", "mail.example.com"),
])
def test_mynetworks_entry(value: str, entry: str) -> None:
    assert mynetworks_entry(value) == entry


@pytest.mark.parametrize("value", [None, 10, ["10.0.0.1"], "10.0.0.1\n", "10.0.0.1\0"])
def test_bad_input_is_one_clear_error(value: object) -> None:
    for name, function in FilterModule().filters().items():
        with pytest.raises(AnsibleFilterError, match=name):
            function(value)
