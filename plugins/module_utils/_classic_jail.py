# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The chroot module's run: plan the jail of one instance on this host, sync it, verify it.

Private to the mailfleet.postfix collection; the API may change without notice.

The plan comes from ``_classic_chroot`` (pure), the host side from ``_classic_jail_sync``; this module only
orders them and builds the module's result. Every refusal raises ``JailFailure`` with the result
so far, so the module fails with the plan in it and nothing changed.
"""

from __future__ import annotations

import os
import platform
import pwd
from typing import Any, Callable, Mapping, Sequence

from . import _host
from ._classic_chroot import ChrootPlanError, HostFacts, Plan, plan_jail
from ._classic_jail_sync import JailError, check_queue_directory, probe_host, reload_master, sync, verify
from ._masterless_units import printable


class JailFailure(Exception):
    """What the module reports with fail_json: a message and the result so far."""

    def __init__(self, message: str, result: Mapping[str, Any]) -> None:
        self.result = dict(result)
        super().__init__(message)


def capath_candidates(params: Mapping[str, str], master_text: str) -> list[str]:
    """Every CApath-like value (main.cf and -o overrides), so the probe reports whether it exists."""
    values = [v for k, v in params.items() if k.endswith("_CApath")]
    values += [word.split("=", 1)[1] for word in master_text.split() if "_CApath=" in word]
    return [v.strip() for v in values if v.strip().startswith("/")]


def verify_checks(plan: Plan, owner: str, names: Sequence[str], services: Sequence[str]
                  ) -> tuple[list[str], list[str], list[str]]:
    """Only what the jail is meant to support: a jail without lookups has nothing to verify."""
    paths = {item.path for item in plan.items}
    return (list(names) if paths & {"etc/hosts", "etc/resolv.conf"} else [],
            list(services) if "etc/services" in paths else [],
            [owner] if "etc/passwd" in paths else [])


def check_extra_files(paths: Sequence[str], allow_private: bool) -> None:
    """Refuse, before anything is read or written, an extra file that only some users may read."""
    if allow_private:
        return
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except (OSError, ValueError):  # missing: the plan warns; NUL: the plan refuses
            continue
        if not mode & 0o004:
            raise JailFailure(f"extra_files: {path} is not world-readable (mode {mode & 0o7777:04o}); nothing was "
                              "changed. Copying it into the jail makes it readable to a compromised daemon: set "
                              "allow_private_extra_files to copy it anyway", {})


def run(p: Mapping[str, Any], runner: _host.Runner, *, check_mode: bool, diff: bool,
        warn: Callable[[str], None]) -> dict[str, Any]:
    """The module's result for its parameters ``p``; JailFailure when it must fail."""
    config_dir = p["config_dir"]
    check_extra_files(p["extra_files"], p["allow_private_extra_files"])
    master_path = os.path.join(config_dir, "master.cf")
    try:
        # Postfix reads master.cf as bytes: keep what is not UTF-8 (a Latin-1 comment) as it is.
        master_text = _host.read_text(master_path)
    except OSError as exc:
        raise JailFailure(f"cannot read {master_path}: {exc.strerror}", {}) from None
    try:
        params = _host.postconf_x(runner, config_dir, postconf=_host.Tools.discover().postconf or "postconf")
    except _host.CommandError as exc:
        raise JailFailure(str(exc), {}) from None
    facts = probe_host(capath_candidates(params, master_text) + list(p["extra_files"]))
    result: dict[str, Any] = {"changed": False, "host": facts, "created": [], "updated": [], "removed": [],
                              "directories": [], "verify": [], "reloaded": False}
    try:
        plan = plan_jail(master_text, params, HostFacts.from_dict(facts), extra_files=p["extra_files"],
                         path=master_path)
    except ChrootPlanError as exc:
        raise JailFailure(f"cannot plan the jail of {config_dir}: {printable(str(exc))}", result) from None
    if p["state"] == "absent":
        plan.items = []
    queue = plan.queue_directory
    result.update(queue_directory=queue, plan=plan.to_dict())
    for warning in plan.warnings:
        warn(warning)
    if platform.system() != "Linux":
        raise JailFailure(f"{platform.system()}: syncing a jail is implemented for Linux only (library locations); "
                          f"nothing was changed in {queue}. The plan is in 'plan'.", result)
    owner = params.get("mail_owner", "postfix")
    try:
        owner_uid = pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise JailFailure(f"mail_owner '{owner}' of {config_dir} does not exist on this host", result) from None
    if os.geteuid() != 0 and not check_mode:
        raise JailFailure(f"must run as root to write the jail {queue} (root-owned) and to chroot for verify; nothing "
                          "was changed. Use become: true, or check mode to see the plan.", result)
    try:
        check_queue_directory(queue, owner_uid)
        synced = sync(queue, [item.to_dict() for item in plan.items], check=check_mode, diff=diff)
    except (JailError, OSError) as exc:
        raise JailFailure(f"cannot sync the jail {queue}: {exc}", result) from None
    result.update(synced.to_dict(), changed=synced.changed)
    if synced.changed and p["reload"] and not check_mode:
        result["reloaded"] = reload_master(queue)
    for warning in synced.warnings:
        warn(warning)
    if diff:
        summary = {"before_header": f"{queue} (jail)", "after_header": f"{queue} (jail)",
                   "before": "".join(line + "\n" for line in synced.before),
                   "after": "".join(line + "\n" for line in synced.after)}
        result["diff"] = [summary] + synced.diff
    if p["verify"] and check_mode and os.geteuid() != 0:
        warn("verify skipped: entering the jail as the mail owner needs root")
    elif p["verify"] and not (check_mode and synced.changed):
        _verify(result, plan, queue, owner, p)
    return result


def _verify(result: dict[str, Any], plan: Plan, queue: str, owner: str, p: Mapping[str, Any]) -> None:
    names, services, users = verify_checks(plan, owner, p["verify_names"], p["verify_services"])
    if not (names or services or users):
        return
    try:
        checks = verify(queue, owner, names=names, services=services, users=users, timeout=p["verify_timeout"])
    except JailError as exc:
        raise JailFailure(str(exc), result) from None
    result["verify"] = [c.to_dict() for c in checks]
    failed = [c for c in checks if not c.ok]
    if failed:
        raise JailFailure(f"lookups inside the jail {queue} as {owner} failed: "
                          + "; ".join(f"{c.name}: {c.detail}" for c in failed), result)
