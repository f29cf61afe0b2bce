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
  - mailfleet.postfix.attributes.full
attributes:
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

import os  # noqa: E402 - imports follow the documentation (ansible-test validate-modules)
import sys  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.mailfleet.postfix.plugins.module_utils import _classic_unit as classic  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils import _host  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils._classic_chroot import ChrootPlanError  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils._masterless_units import printable  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import MasterCfError  # noqa: E402


def run(module: AnsibleModule) -> dict[str, Any]:
    p, runner = module.params, _host.ModuleRunner(module)
    config_dir = p["config_dir"]
    master_path = os.path.join(config_dir, "master.cf")
    absent = p["state"] == "absent"
    try:
        master_text = _host.read_text(master_path)
    except OSError as exc:
        module.fail_json(msg=f"cannot read {master_path}: {exc.strerror}")
    try:
        params = _host.postconf_x(runner, config_dir, postconf=_host.Tools.discover().postconf or "postconf")
        generated = classic.generate(master_text, params, config_dir=config_dir, source=master_path, absent=absent,
                                     jail=p["jail"], libexec=p["libexec_dir"], custom_commands=p["custom_commands"],
                                     python=sys.executable or "/usr/bin/python3")
    except (ChrootPlanError, MasterCfError) as exc:
        module.fail_json(msg=f"cannot generate the unit of {config_dir}: {printable(str(exc))}")
    except _host.CommandError as exc:
        module.fail_json(msg=str(exc))
    inst = generated.instance
    units = [] if absent else [n for n in classic.managed_units(inst) if n in generated.units]
    done: list[str] = []
    try:
        specs = classic.file_specs(generated, p["unit_dir"], absent=absent)
        classic.refuse(specs, {s.path: _host.observe(s.path) for s in specs})
        files = _host.Writer(check_mode=True)  # observes and records the diff; the plan writes
        changes = [s for s in specs if files.ensure(s)]
        plan = classic.plan(p["state"], p["enabled"], inst, units, changes,
                            classic.observe_units(runner, inst, p["state"]))
        _host.execute(plan, classic.operations(runner), check_mode=module.check_mode, done=done)
    except (classic.UnitPlanError, _host.CommandError, _host.HostError, OSError) as exc:
        module.fail_json(msg=_host.failed_after(exc, done), actions=done)
    result: dict[str, Any] = {
        "changed": bool(plan), "unit": inst.unit, "kind": generated.kind, "units": units, "masks": generated.masks,
        "hardening": generated.to_dict()["hardening"], "files": files.changed,
        "exposure": None if absent else classic.exposure(runner, module.tmpdir, inst.unit, generated.units[inst.unit]),
    }
    if module._diff:
        result["diff"] = files.diffs
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
