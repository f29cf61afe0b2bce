# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pytest plugin for molecule's testinfra verifier: test the scenario's containers as podman://NAME.

Test modules without their own ``testinfra_hosts`` run against every instance of the scenario;
``hosts_in_group(NAME)`` returns the podman:// specs of one inventory group.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import yaml


def _inventory() -> dict[str, Any]:
    path = os.environ.get("MOLECULE_INVENTORY_FILE", "")
    if not path or not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def _members(node: dict[str, Any] | None) -> set[str]:
    node = node or {}
    found = set(node.get("hosts") or {})
    for child in (node.get("children") or {}).values():
        found |= _members(child)
    return found


def _find_group(nodes: dict[str, Any], group: str) -> dict[str, Any] | None:
    for name, node in nodes.items():
        if name == group:
            return node or {}
        found = _find_group((node or {}).get("children") or {}, group)
        if found is not None:
            return found
    return None


def hosts_in_group(group: str = "all") -> list[str]:
    """podman:// host specs of an inventory group of the running scenario (children included)."""
    inventory = _inventory()
    if group == "all":
        names = set().union(*(_members(node) for node in inventory.values())) if inventory else set()
    else:
        names = _members(_find_group(inventory, group))
    return [f"podman://{name}" for name in sorted(names)]


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Default a test module's hosts to all scenario instances, before testinfra parametrizes."""
    if "_testinfra_host" not in metafunc.fixturenames or metafunc.config.option.hosts is not None:
        return
    if not hasattr(metafunc.module, "testinfra_hosts"):
        metafunc.module.testinfra_hosts = hosts_in_group("all")
