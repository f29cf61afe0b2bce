# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every scenario: systemd sandboxing must really be enforced inside the lab hosts.

Without CAP_SYS_ADMIN systemd starts sandboxed units but silently enforces nothing; the hardening
this collection derives would then go untested.
"""

from __future__ import annotations

from typing import Any

PROBE = "/etc/mailfleet-sandbox-probe"


def _run_unit(host: Any, *properties: str) -> Any:
    props = " ".join(f"-p {p}" for p in properties)
    return host.run(f"systemd-run --wait --quiet --collect {props} /usr/bin/touch {PROBE}")


def test_protect_system_strict_makes_etc_read_only(host: Any) -> None:
    result = _run_unit(host, "ProtectSystem=strict")
    assert result.rc != 0, "a ProtectSystem=strict unit could write /etc: sandboxing is not enforced"
    assert not host.file(PROBE).exists


def test_same_unit_without_sandbox_can_write(host: Any) -> None:
    # Control: the failure above comes from the sandbox, not from systemd-run itself.
    try:
        assert _run_unit(host).rc == 0
        assert host.file(PROBE).exists
    finally:
        host.run(f"rm -f {PROBE}")


def test_dynamic_user_units_start(host: Any) -> None:
    result = host.run("systemd-run --wait --quiet --collect -p DynamicUser=yes /usr/bin/true")
    assert result.rc == 0, result.stderr
