#!/usr/bin/python
# Copyright: mailfleet maintainers (@mailfleet)
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: systemd_units
author: mailfleet maintainers (@mailfleet)
version_added: 0.1.0
short_description: Run a Postfix instance without master(8), as systemd units generated from its master.cf
description:
  - Switches one Postfix instance between C(master) mode (master(8) supervises the daemons) and C(systemd)
    mode, in which every master.cf entry becomes systemd units that run the stock daemons and no master
    process runs. See C(docs/systemd.md) for the mapping, the hardening and how to debug.
  - In C(systemd) mode it installs a systemd generator, the fd bridge and the library both import (from this
    module's own payload) under O(libexec_dir), and enables the instance for the generator. At boot and at
    every C(systemctl daemon-reload) the generator turns the instance's master.cf into units
    (C(postfix-NAME-*.socket|service|timer), one C(postfix-NAME.target), one C(postfix-NAME.slice)), so editing
    master.cf and running C(systemctl daemon-reload) (or C(postfix reload)) is all a user needs. A broken
    master.cf makes the generator log the line and keep the last good units.
  - The module maps master.cf itself before changing anything. An entry the mapping cannot express (an
    unknown daemon, a type the daemon cannot serve, a process limit or privilege the daemon refuses) or two
    entries on one listener fail the task with the line and the reason, and nothing is changed or activated.
  - The distribution's master unit of the instance (C(postfix@INSTANCE.service) on Debian, C(postfix.service)
    elsewhere) is masked by the generator while the instance is in C(systemd) mode, from a directory that
    outranks C(/etc/systemd/system), so no package upgrade or C(systemctl unmask) brings a master back. The
    instance's status holder takes master's own locks, so C(postfix status), C(postfix reload) (regenerate the
    units, then retire running daemons gracefully) and C(postfix stop) act on the master-less instance, and
    C(postfix start) reports it as running instead of starting a master beside it. On a stopped instance,
    C(postfix start) starts its target. For that, Postfix's C(postfix-script) is moved aside with
    C(dpkg-divert) while any instance runs master-less, and a small router in its place sends C(start) of
    those instances to systemd and everything else to Postfix's own script. The diversion is removed when the last instance is
    switched back to V(master).
  - Switching modes stops one side completely (no master and no daemon of the instance left), then starts the
    other and verifies it. The queue stays on disk, so queued mail is delivered by the side that runs next.
  - Units that are no longer generated (an entry removed from master.cf) are stopped. Changed units take
    effect at once; changed services by a graceful reload of the instance, changed listeners by a restart of
    the instance.
  - After a start, restart or reload the task fails, naming each unit with its state and result, if a
    generated socket unit does not listen or a unit of the instance failed. With O(state=started) a running
    instance with such a unit is started again. Like master(8), a local listener first replaces whatever is
    at its name (an endpoint whose type changed, e.g. C(pickup) from C(unix) to C(fifo)). The failed state
    of the instance's own units (also of those no longer generated) is reset when they are stopped and when
    the instance returns to V(master), never that of other units.
options:
  config_dir:
    description:
      - Configuration directory of the instance (C(/etc/postfix) for the primary instance).
    type: path
    default: /etc/postfix
  mode:
    description:
      - V(systemd) runs the instance master-less; V(master) runs it under master(8) again.
    type: str
    choices: [systemd, master]
    default: systemd
  state:
    description:
      - V(started) makes sure the instance runs in O(mode) (switching when needed); V(stopped) sets O(mode) up
        and stops the instance; V(present) only installs and configures, without starting or stopping. With
        O(mode=master), V(present) still stops a running master-less instance, whose units it removes; it
        does not start master(8).
    type: str
    choices: [started, stopped, present]
    default: started
  chroot:
    description:
      - How master.cf's C(chroot=y) is expressed. V(sandbox) uses systemd sandboxing instead of Postfix's own
        chroot (no jail to keep in sync). V(postfix) keeps Postfix's C(-c); the jail must then be maintained,
        for example with M(mailfleet.postfix.chroot).
    type: str
    choices: [sandbox, postfix]
    default: sandbox
  libexec_dir:
    description:
      - Where the generator's library and the fd bridge are installed.
    type: path
    default: /usr/libexec/mailfleet-postfix
  generator_dir:
    description:
      - systemd's directory for administrator-installed generators.
    type: path
    default: /etc/systemd/system-generators
  python:
    description:
      - The interpreter the generator and bridge run with on the host (standard library only).
    type: path
    default: /usr/bin/python3
  max_use_factor:
    description:
      - Pool workers (smtpd, cleanup, smtp, local, ...) serve C(max_use) times this many clients before they
        exit; the units pass it to the daemon as C(-o max_use=N), visible in C(ExecStart). Replacing a worker
        is a unit start (about 90 ms of CPU with the sandbox) where master(8) forks (about 1 ms), so
        Postfix's default of 100 would cost master-less mode about half its throughput.
      - An entry that sets C(-o max_use) itself keeps its value. V(1) keeps Postfix's C(max_use) everywhere.
    type: int
    default: 10
  timeout:
    description:
      - Seconds to wait for one side to stop completely, or for the other to come up.
    type: int
    default: 90
extends_documentation_fragment:
  - mailfleet.postfix.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff shows the instance's unit files before and after.
  idempotent:
    support: full
  platform:
    platforms: debian
    details:
      - Needs systemd as init (version 252 or later) and Postfix 3.x; tested on Debian 12.
notes:
  - Must run as root (C(become=true)).
  - Hosts need Python 3.10 or later at O(python) for the generator and bridge.
seealso:
  - plugin: mailfleet.postfix.master_cf_units
    plugin_type: filter
  - module: mailfleet.postfix.instance_unit
  - module: mailfleet.postfix.chroot
"""

EXAMPLES = r"""
- name: Run the primary instance without master(8)
  mailfleet.postfix.systemd_units:
    mode: systemd
  become: true

- name: Preview what a switch of the edge instance would change
  mailfleet.postfix.systemd_units:
    config_dir: /etc/postfix-edge
    mode: systemd
  check_mode: true
  diff: true
  become: true

- name: Back to master mode; mail queued meanwhile is delivered by master
  mailfleet.postfix.systemd_units:
    config_dir: /etc/postfix-edge
    mode: master
  become: true
"""

RETURN = r"""
instance:
  description: Short instance name used in unit names (V(default) for the primary instance).
  returned: always
  type: str
  sample: default
mode:
  description: The mode the instance is in after the task.
  returned: always
  type: str
  sample: systemd
target:
  description: The instance's systemd target.
  returned: always
  type: str
  sample: postfix-default.target
units:
  description: Names of the generated units (empty in C(master) mode).
  returned: always
  type: list
  elements: str
units_changed:
  description: Generated units added, removed and modified by this task.
  returned: always
  type: dict
  sample: {"added": [], "removed": [], "modified": ["postfix-default-relay-unix@.service"]}
files_changed:
  description: Installed files (library, bridge, generator, instance configuration) written or removed.
  returned: always
  type: list
  elements: str
switched:
  description: Whether the task stopped one supervisor and started the other.
  returned: always
  type: bool
actions:
  description: What the task did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["stop postfix@-.service", "systemctl daemon-reload", "start postfix-default.target"]
services:
  description: How each master.cf entry runs (mode C(accept) or C(pool), argv, run-as user, units).
  returned: when O(mode=systemd)
  type: list
  elements: dict
"""

import os  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.mailfleet.postfix.plugins.module_utils import _host, _masterless_generator, _masterless_host, _masterless_units  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils import _masterless_plan as _plan  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import MasterCfError  # noqa: E402

FAILURES = (_masterless_host.MasterlessError, _host.CommandError, _host.HostError, OSError)


def run(module: AnsibleModule) -> dict[str, Any]:
    p = module.params
    if os.geteuid() != 0:
        module.fail_json(msg="systemd_units must run as root (become: true): it installs a systemd generator "
                             "and starts and stops Postfix")
    if not os.path.isdir("/run/systemd/system"):
        module.fail_json(msg="systemd is not the init system of this host; the master-less mode needs it")
    if p["max_use_factor"] < 1:
        module.fail_json(msg=f"max_use_factor must be 1 or more, not {p['max_use_factor']}")
    try:
        facts = _masterless_generator.postconf_facts(p["config_dir"].rstrip("/") or "/", _masterless_host.PROBE_PARAMS)
        probe = _masterless_units.Instance.from_params(facts)
        name = probe.short_name
    except (_masterless_generator.GeneratorError, _host.CommandError, MasterCfError) as exc:
        module.fail_json(msg=str(exc))
    try:
        setup = _masterless_host.setup(probe, p)
    except MasterCfError as exc:
        module.fail_json(msg=f"nothing changed: {_masterless_units.printable(str(exc))}", line=exc.line, path=exc.path)
    except _masterless_generator.GeneratorError as exc:
        module.fail_json(msg=f"nothing changed: {_masterless_units.printable(str(exc))}")
    runner = _host.ModuleRunner(module)
    wanted, observed = setup.wanted, _masterless_host.observe(runner, setup)
    plan = _plan.plan(observed, wanted)
    for warning in setup.warnings + tuple(_plan.notes(observed, wanted)):
        module.warn(warning)
    out = {"instance": name, "mode": p["mode"], "target": wanted.target, "units": list(wanted.units),
           "units_changed": _plan.summarize(observed.unit_files, wanted.unit_files),
           "files_changed": _plan.files_changed(plan), "switched": _plan.switched(plan, wanted), "actions": []}
    if wanted.mode == "systemd":
        out["services"] = setup.services
    if module._diff:
        out["diff"] = _masterless_host.unit_diff(observed.unit_files, wanted.unit_files, wanted.prefix)
    try:
        _host.execute(plan, _masterless_host.operations(runner, setup), check_mode=module.check_mode, done=out["actions"])
    except FAILURES as exc:
        module.fail_json(msg=str(exc), **out)
    out["changed"] = bool(out["actions"] or out["files_changed"])
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "config_dir": {"type": "path", "default": "/etc/postfix"},
            "mode": {"type": "str", "choices": ["systemd", "master"], "default": "systemd"},
            "state": {"type": "str", "choices": ["started", "stopped", "present"], "default": "started"},
            "chroot": {"type": "str", "choices": ["sandbox", "postfix"], "default": "sandbox"},
            "libexec_dir": {"type": "path", "default": "/usr/libexec/mailfleet-postfix"},
            "generator_dir": {"type": "path", "default": "/etc/systemd/system-generators"},
            "python": {"type": "path", "default": "/usr/bin/python3"},
            "max_use_factor": {"type": "int", "default": _masterless_units.DEFAULT_MAX_USE_FACTOR},
            "timeout": {"type": "int", "default": 90},
        },
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
