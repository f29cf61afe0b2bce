# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""address_scope, mynetworks_entry (docs: the .yml files next to this one)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_instances import address_scope as _scope
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_instances import mynetworks_entry as _entry


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise AnsibleFilterError(f"{name} expects an address as text, got {type(value).__name__}")
    if any(c in value for c in "\0\n\r"):
        raise AnsibleFilterError(f"{name}: {ascii(value)} has a line break or NUL byte")
    return value


def address_scope(value: Any) -> str:
    """Where an address is reachable from: loopback, private, unique-local, shared, link-local, unspecified,
    public, or name when it is not one IP address."""
    return _scope(_text(value, "address_scope"))


def mynetworks_entry(value: Any) -> str:
    """An address or network in mynetworks form ([2001:db8::1]/128, 10.0.0.1/32)."""
    return _entry(_text(value, "mynetworks_entry"))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"address_scope": address_scope, "mynetworks_entry": mynetworks_entry}
