#!/usr/bin/python
# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: instance_unit
author: mailfleet maintainers (@mailfleet)
version_added: 0.1.0
short_description: One hardened systemd unit per Postfix instance in master mode
description:
  - Writes C(postfix-NAME-master.service) for one Postfix instance (C(NAME) is V(default) for the primary
    instance, V(edge) for C(postfix-edge)), generated from the instance's master.cf and main.cf. master(8)
    keeps supervising the daemons; the unit starts exactly this instance's master, in a cgroup of its own,
    with C(postfix -c DIR start) (never through C(postmulti) or the multi-instance wrapper). C(postfix -c DIR
    check) runs before every start, reload is C(postfix -c DIR reload), stop is C(postfix -c DIR stop).
  - Hardening is computed from what master.cf runs, and every directive is explained in the unit's header
    comment and in RV(hardening). One unit holds every process master(8) starts, so it allows the union of
    what the instance's entries need and nothing more. Every instance gets C(PrivateTmp), C(PrivateDevices),
    C(RestrictSUIDSGID), C(RestrictNamespaces), C(ProtectClock), the address families C(AF_UNIX AF_INET
    AF_INET6 AF_NETLINK), a system call filter (C(@system-service)) and a minimal capability bounding set.
    An instance without local, virtual, pipe and spawn entries (an edge) also gets C(NoNewPrivileges),
    C(ProtectHome), C(MemoryDenyWriteExecute) and C(ProtectSystem=strict) with only the queue and data
    directories writable. Entries that run programs (local, pipe, spawn) give up C(NoNewPrivileges) (a
    C(.forward) that runs C(sendmail) needs set-gid C(postdrop)), C(MemoryDenyWriteExecute) and
    C(ProtectSystem=strict) (C(full) instead); local and pipe also give up C(ProtectHome) (C(~/Maildir),
    C(.forward)). The scores of each kind are in the collection's docs/chroot.md.
  - A master.cf command that is not a Postfix daemon (a typo such as C(smptd), or a program of its own) is
    refused, since it would run inside the same unit as smtpd. Run programs through pipe(8) or spawn(8), or
    name a daemon written for master(8) in O(custom_commands).
  - When entries run chrooted, it also installs C(postfix-NAME-jail.path) and C(postfix-NAME-jail.service),
    which refresh the jail from its host sources when one of them changes (C(/etc/resolv.conf), C(/etc/hosts),
    CA directories, ...) and before every start, with the C(chroot-sync) helper this module installs in
    O(libexec_dir). The jail's contents come from M(mailfleet.postfix.chroot), which must have run once.
  - Debian's C(postfix@INSTANCE.service) is masked for this instance, and the unit conflicts with it and with
    the master-less units of the same instance, so no second master can start for the instance. The unit is
    part of C(postfix.service), so C(systemctl start|stop|reload postfix) keeps acting on all instances.
  - RV(exposure) is the score of C(systemd-analyze security --offline=yes) for the written unit when the host
    has systemd 250 or later.
options:
  config_dir:
    description:
      - Configuration directory of the instance.
    type: path
    default: /etc/postfix
  state:
    description:
      - V(started) writes the units and makes sure the instance runs under its unit; a running instance is
        restarted when its unit changed (hardening only takes effect at start). A master that runs outside the
        unit (started by hand or by Debian's unit) is stopped first.
      - V(stopped) writes the units and stops the instance.
      - V(present) writes the units and enables them, without starting or stopping anything.
      - V(absent) stops and disables the units, removes them and the masks this module created.
    type: str
    choices: [started, stopped, present, absent]
    default: started
  enabled:
    description:
      - Whether the unit starts at boot (and with C(postfix.service)).
    type: bool
    default: true
  jail:
    description:
      - Install the jail refresh units when entries run chrooted.
    type: bool
    default: true
  unit_dir:
    description:
      - Where unit files (and the masks) are written.
    type: path
    default: /etc/systemd/system
  libexec_dir:
    description:
      - Where the C(chroot-sync) helper is installed.
    type: path
    default: /usr/libexec/mailfleet-postfix
  custom_commands:
    description:
      - master.cf commands (the 8th field, exactly as written) that are not Postfix daemons and may run anyway,
        for example a third-party daemon written for master(8).
      - The unit then gets what pipe(8) programs get (no C(NoNewPrivileges), no C(ProtectHome), C(ProtectSystem=full),
        no C(MemoryDenyWriteExecute)); every other sandbox setting stays. A program that needs more than that
        needs a drop-in of your own.
      - Any other command that is not a Postfix daemon makes the module fail, naming the master.cf line.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - mailfleet.postfix.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
  platform:
    support: full
    platforms: posix
    details:
      - Needs systemd; V(started) and V(stopped) need it running.
notes:
  - Hardening is applied at start. A change of master.cf that changes the instance's kind (for example adding a
    C(local) entry to an edge) changes the unit, and V(started) restarts the instance.
seealso:
  - module: mailfleet.postfix.chroot
  - module: mailfleet.postfix.instance
  - plugin: mailfleet.postfix.master_cf_chroot_plan
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Run the edge instance under its own hardened unit
  mailfleet.postfix.instance_unit:
    config_dir: /etc/postfix-edge

- name: Install the unit of the primary instance without touching the running system
  mailfleet.postfix.instance_unit:
    state: present
"""

RETURN = r"""
unit:
  description: Name of the instance's unit.
  returned: always
  type: str
  sample: postfix-edge-master.service
kind:
  description: V(edge) (no local, virtual, pipe or spawn entries), V(virtual) or V(delivery).
  returned: always
  type: str
  sample: edge
units:
  description: Names of all unit files this module manages for the instance.
  returned: always
  type: list
  elements: str
masks:
  description: Units masked so that they cannot start a second master for the instance.
  returned: always
  type: list
  elements: str
  sample: [postfix@postfix-edge.service]
hardening:
  description: Each hardening directive (C(directive), C(value)) and C(why) it has this value.
  returned: always
  type: list
  elements: dict
files:
  description: Files written (or, in check mode, that would be written) or removed.
  returned: always
  type: list
  elements: str
exposure:
  description: Overall exposure of the unit by C(systemd-analyze security --offline=yes); null when unavailable.
  returned: always
  type: float
  sample: 3.0
"""

import inspect  # noqa: E402 - imports follow the documentation (ansible-test validate-modules)
import os  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
from typing import Any, Optional  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.mailfleet.postfix.plugins.module_utils import _chroot_sync  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils._chroot import (  # noqa: E402
    ChrootPlanError,
    HostFacts,
    plan_jail,
)
from ansible_collections.mailfleet.postfix.plugins.module_utils._classic_unit import (  # noqa: E402
    JAIL_SYNC,
    ClassicUnits,
    build_classic_units,
)
from ansible_collections.mailfleet.postfix.plugins.module_utils._generator import master_units  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils._mastercf import MasterCfError  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils._units import printable  # noqa: E402


def postconf(module: AnsibleModule, config_dir: str) -> dict[str, str]:
    binary = module.get_bin_path("postconf", required=True)
    rc, out, err = module.run_command([binary, "-c", config_dir, "-x"], environ_update={"LANG": "C"})
    if rc != 0:
        module.fail_json(msg=f"postconf -c {config_dir} -x failed: {err.strip() or out.strip()}", rc=rc)
    params: dict[str, str] = {}
    for line in out.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            params[name.strip()] = value
        elif line.endswith(" ="):
            params[line[:-2].strip()] = ""
    return params


def systemctl(module: AnsibleModule, *args: str, check: bool = True) -> tuple[int, str]:
    binary = module.get_bin_path("systemctl", required=True)
    rc, out, err = module.run_command([binary, *args])
    if check and rc != 0:
        module.fail_json(msg=f"systemctl {' '.join(args)} failed: {(err or out).strip()}", rc=rc)
    return rc, out.strip()


def jail_watch(master_text: str, params: dict[str, str], config_dir: str) -> list[str]:
    """Host files the jail copies (and their symlink targets): what the .path unit watches."""
    facts = _chroot_sync.probe_host([v for k, v in params.items() if k.endswith("_CApath") and v.startswith("/")])
    plan = plan_jail(master_text, params, HostFacts.from_dict(facts), path=os.path.join(config_dir, "master.cf"))
    watch: list[str] = []
    for item in plan.items:
        if item.kind in ("file", "passwd", "certs") and item.source.startswith("/etc/"):
            watch.append(item.source)
            real = os.path.realpath(item.source)
            if real != item.source:
                watch.append(real)
    return watch


class Files:
    """Desired files of the instance; writes only what differs."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.changed: list[str] = []
        self.diff: list[dict[str, str]] = []

    def content(self, path: str, text: str, mode: int = 0o644) -> None:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as handle:
                before: Optional[str] = handle.read()
        except OSError:
            before = None
        current_mode = os.stat(path).st_mode & 0o7777 if before is not None and not os.path.islink(path) else None
        if before == text and current_mode == mode and not os.path.islink(path):
            return
        self.changed.append(path)
        self.diff.append({"before_header": path, "after_header": path, "before": before or "", "after": text})
        if self.module.check_mode:
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = os.path.join(self.module.tmpdir, os.path.basename(path))
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        self.module.atomic_move(tmp, path)
        os.chmod(path, mode)

    def mask(self, path: str) -> None:
        if os.path.islink(path) and os.readlink(path) == "/dev/null":
            return
        if os.path.lexists(path):
            self.module.fail_json(msg=f"{path} exists and is not a mask (a link to /dev/null); it would start a second "
                                      "master for this instance. Remove it, or let this module mask it.")
        self.changed.append(path)
        self.diff.append({"before_header": path, "after_header": path, "before": "", "after": "-> /dev/null\n"})
        if not self.module.check_mode:
            os.symlink("/dev/null", path)

    def remove(self, path: str, *, only_mask: bool = False) -> None:
        if not os.path.lexists(path) or (only_mask and not (os.path.islink(path) and os.readlink(path) == "/dev/null")):
            return
        self.changed.append(path)
        if not self.module.check_mode:
            os.unlink(path)


def ensure_files(module: AnsibleModule, generated: ClassicUnits, files: Files, *, absent: bool) -> list[str]:
    unit_dir, prefix = module.params["unit_dir"], generated.instance.prefix
    managed = [generated.instance.unit, f"{prefix}-jail.service", f"{prefix}-jail.path"]
    for name in managed:
        path = os.path.join(unit_dir, name)
        if absent or name not in generated.units:
            files.remove(path)
        else:
            files.content(path, generated.units[name])
    for name in generated.masks:
        if absent:
            files.remove(os.path.join(unit_dir, name), only_mask=True)
        else:
            files.mask(os.path.join(unit_dir, name))
    if not absent and f"{prefix}-jail.service" in generated.units:
        source = f"#!{generated.instance.python}\n" + inspect.getsource(_chroot_sync)
        files.content(os.path.join(module.params["libexec_dir"], JAIL_SYNC), source, 0o755)
    return [n for n in managed if n in generated.units and not absent]


def _enable(module: AnsibleModule, names: list[str], enabled: bool) -> bool:
    changed = False
    for name in names:
        is_enabled = systemctl(module, "is-enabled", name, check=False)[1] == "enabled"
        if is_enabled != enabled:
            changed = True
            if not module.check_mode:
                systemctl(module, "enable" if enabled else "disable", name)
    return changed


def _active(module: AnsibleModule, name: str) -> bool:
    return systemctl(module, "is-active", name, check=False)[1] in ("active", "reloading", "activating")


def _start(module: AnsibleModule, generated: ClassicUnits) -> None:
    inst = generated.instance
    for unit in inst.distribution_units:
        if _active(module, unit):
            systemctl(module, "stop", unit)
    postfix = os.path.join(inst.command_directory, "postfix")
    if module.run_command([postfix, "-c", inst.config_directory, "status"])[0] == 0:
        # A master outside any unit: hand it over instead of failing with "already running".
        module.run_command([postfix, "-c", inst.config_directory, "stop"], check_rc=True)
    systemctl(module, "start", inst.unit)


def ensure_state(module: AnsibleModule, generated: ClassicUnits, units: list[str], *, unit_changed: bool) -> bool:
    """The systemctl side of started/stopped/present; True when anything changed."""
    state, unit = module.params["state"], generated.instance.unit
    booted = os.path.isdir("/run/systemd/system")
    if state in ("started", "stopped") and not booted:
        module.fail_json(msg=f"state={state} needs a running systemd (/run/systemd/system is missing); "
                             "use state=present to only install the units")
    path_unit = [u for u in units if u.endswith(".path")]
    changed = _enable(module, [unit] + path_unit, module.params["enabled"])
    if not booted:
        return changed
    running = _active(module, unit)
    if state == "started":
        if not running or unit_changed:
            changed = True
            if module.check_mode:
                pass
            elif running:
                systemctl(module, "restart", unit)
            else:
                _start(module, generated)
        for name in path_unit:
            if not _active(module, name):
                changed = True
                if not module.check_mode:
                    systemctl(module, "start", name)
    elif state == "stopped" and running:
        changed = True
        if not module.check_mode:
            systemctl(module, "stop", unit)
    return changed


def remove_state(module: AnsibleModule, generated: ClassicUnits) -> bool:
    """Stop and disable every managed unit before its file goes."""
    if not os.path.isdir("/run/systemd/system"):
        return False
    prefix = generated.instance.prefix
    names = [f"{prefix}-jail.path", generated.instance.unit, f"{prefix}-jail.service"]
    changed = False
    for name in names:
        if _active(module, name):
            changed = True
            if not module.check_mode:
                systemctl(module, "stop", name)
    return _enable(module, names[:2], False) or changed


def exposure(module: AnsibleModule, name: str, text: str) -> Optional[float]:
    """systemd-analyze's score of the generated unit (a copy in the module's tmpdir, so check mode works too)."""
    binary = module.get_bin_path("systemd-analyze")
    if not binary:
        return None
    path = os.path.join(module.tmpdir, name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    rc, out, err = module.run_command([binary, "security", "--offline=yes", path])
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out + err)
    return float(match.group(1)) if match else None


def run(module: AnsibleModule) -> dict[str, Any]:
    config_dir = module.params["config_dir"]
    master_path = os.path.join(config_dir, "master.cf")
    try:
        # Postfix reads master.cf as bytes: keep what is not UTF-8 (a Latin-1 comment) as it is.
        with open(master_path, encoding="utf-8", errors="surrogateescape") as handle:
            master_text = handle.read()
    except OSError as exc:
        module.fail_json(msg=f"cannot read {master_path}: {exc.strerror}")
    params = postconf(module, config_dir)
    absent = module.params["state"] == "absent"
    try:
        watch = jail_watch(master_text, params, config_dir) if module.params["jail"] and not absent else []
        # Removing needs only the names: a master.cf this module would refuse must not block it.
        generated = build_classic_units("" if absent else master_text, params, jail_watch=watch, source=master_path,
                                        custom_commands=module.params["custom_commands"],
                                        extra={"libexec_directory": module.params["libexec_dir"],
                                               "python": sys.executable or "/usr/bin/python3",
                                               "distribution_unit": " ".join(master_units(
                                                   params.get("multi_instance_name") or "-",
                                                   params.get("config_directory") or config_dir)) or None})
    except (ChrootPlanError, MasterCfError) as exc:
        module.fail_json(msg=f"cannot generate the unit of {config_dir}: {printable(str(exc))}")
    main_unit = os.path.join(module.params["unit_dir"], generated.instance.unit)
    changed = remove_state(module, generated) if absent else False
    files = Files(module)
    units = ensure_files(module, generated, files, absent=absent)
    changed = changed or bool(files.changed)
    if files.changed and not module.check_mode and os.path.isdir("/run/systemd/system"):
        systemctl(module, "daemon-reload")
    if not absent:
        changed = ensure_state(module, generated, units, unit_changed=main_unit in files.changed) or changed
    text = generated.units[generated.instance.unit]
    result: dict[str, Any] = {
        "changed": changed,
        "unit": generated.instance.unit,
        "kind": generated.kind,
        "units": units,
        "masks": generated.masks,
        "hardening": generated.to_dict()["hardening"],
        "files": files.changed,
        "exposure": None if absent else exposure(module, generated.instance.unit, text),
    }
    if module._diff:
        result["diff"] = files.diff
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "config_dir": {"type": "path", "default": "/etc/postfix"},
            "state": {"type": "str", "choices": ["started", "stopped", "present", "absent"], "default": "started"},
            "enabled": {"type": "bool", "default": True},
            "jail": {"type": "bool", "default": True},
            "unit_dir": {"type": "path", "default": "/etc/systemd/system"},
            "libexec_dir": {"type": "path", "default": "/usr/libexec/mailfleet-postfix"},
            "custom_commands": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
