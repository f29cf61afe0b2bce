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
import shutil  # noqa: E402
from typing import Any, Callable  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.mailfleet.postfix.plugins.module_utils import (  # noqa: E402
    _bridge,
    _generator,
    _mastercf,
    _masterless,
    _sandbox,
    _semantics,
    _units,
)
from ansible_collections.mailfleet.postfix.plugins.module_utils._mastercf import MasterCfError  # noqa: E402

PAYLOAD = {"_mastercf": _mastercf, "_semantics": _semantics, "_units": _units, "_sandbox": _sandbox, "_bridge": _bridge,
           "_generator": _generator}


def run(module: AnsibleModule) -> dict[str, Any]:
    p = module.params
    if os.geteuid() != 0:
        module.fail_json(msg="systemd_units must run as root (become: true): it installs a systemd generator "
                             "and starts and stops Postfix")
    if not os.path.isdir("/run/systemd/system"):
        module.fail_json(msg="systemd is not the init system of this host; the master-less mode needs it")
    config_dir = p["config_dir"].rstrip("/") or "/"
    runner = _runner(module)
    conf = {"config_directory": config_dir}
    if p["chroot"] != "sandbox":
        conf["chroot"] = p["chroot"]
    if p["libexec_dir"] != "/usr/libexec/mailfleet-postfix":
        conf["libexec_directory"] = p["libexec_dir"]
    if p["python"] != "/usr/bin/python3":
        conf["python"] = p["python"]
    if p["max_use_factor"] < 1:
        module.fail_json(msg=f"max_use_factor must be 1 or more, not {p['max_use_factor']}")
    if p["max_use_factor"] != _units.DEFAULT_MAX_USE_FACTOR:
        conf["max_use_factor"] = str(p["max_use_factor"])
    try:
        wanted = ("multi_instance_name", "queue_directory", "command_directory", "daemon_directory")
        facts = _generator.postconf_facts(config_dir, wanted)
        probe = _units.Instance.from_params(facts)
        name = probe.short_name
    except (_generator.GeneratorError, MasterCfError) as exc:
        module.fail_json(msg=str(exc))
    conf_path = os.path.join(_generator.CONF_DIR, f"{name}.conf")
    state_path = os.path.join(_generator.STATE_DIR, name, "units.set")
    before = _current_units(conf_path, state_path)
    want_systemd = p["mode"] == "systemd"
    out = {"instance": name, "mode": p["mode"], "target": probe.target, "units": [], "files_changed": [],
           "switched": False, "actions": []}
    files: list[_masterless.File] = []
    after: dict[str, str] = {}
    if want_systemd:
        try:
            inputs = _generator.Inputs(name, conf)
            unitset = _generator.build(name, conf, inputs=inputs)
        except MasterCfError as exc:
            module.fail_json(msg=f"nothing changed: {_units.printable(str(exc))}", line=exc.line, path=exc.path)
        except _generator.GeneratorError as exc:
            module.fail_json(msg=f"nothing changed: {_units.printable(str(exc))}")
        after = _generator.split_record(_generator.saved_record(unitset, inputs))[0]
        out["units"] = sorted(unitset.units)
        out["services"] = [s.to_dict() for s in unitset.services]
        for warning in unitset.warnings:  # what master(8) would log, e.g. a duplicate entry
            module.warn(warning)
        files = _masterless.installation(PAYLOAD, libexec=p["libexec_dir"], generator_dir=p["generator_dir"],
                                         python=p["python"])
        conf_values = {k: v for k, v in conf.items() if k != "config_directory"}
        files.append(_masterless.File(conf_path, _masterless.conf_text(config_dir, conf_values)))
        lib_dir = os.path.join(p["libexec_dir"], _masterless.PACKAGE)

        def state_file() -> _masterless.File:
            # After the library is installed: the key covers its files, as the generator sees them.
            record = _generator.saved_record(unitset, inputs, lib_dir)
            return _masterless.File(state_path, _generator.set_text(record), mode=0o644)
    out["units_changed"] = _masterless.summarize(before, after)
    changed_files = [f for f in files if f.differs()]
    removing = not want_systemd and os.path.exists(conf_path)
    removed = [conf_path] + ([state_path] if os.path.exists(state_path) else []) if removing else []
    out["files_changed"] = [f.path for f in changed_files] + removed
    if module._diff:
        out["diff"] = {"before": _masterless.diff_text(before), "after": _masterless.diff_text(after),
                       "before_header": f"{probe.prefix}-* (loaded)", "after_header": f"{probe.prefix}-* (generated)"}
    ctx = _Context(module, runner, probe, config_dir, out)
    if want_systemd:
        units_changed = out["units_changed"]
        listeners_moved = bool(units_changed["added"] or units_changed["removed"] or units_changed["modified"])
        ctx.to_systemd(changed_files, state_file, listeners_moved)
    else:
        ctx.to_master(conf_path, state_path)
    out["changed"] = bool(out["actions"] or out["files_changed"])
    return out


class _Context:
    def __init__(self, module: AnsibleModule, runner: _masterless.Runner, probe: _units.Instance, config_dir: str,
                 out: dict[str, Any]) -> None:
        self.module = module
        self.run = runner
        self.inst = probe
        self.config_dir = config_dir
        self.out = out
        self.check = module.check_mode
        self.timeout = float(module.params["timeout"])
        self.state = module.params["state"]
        self.postfix = os.path.join(probe.command_directory, "postfix")
        self.master_units = [f"{probe.prefix}-master.service"] + list(_generator.master_units(probe.name or "-", probe.config_directory))

    def act(self, what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.out["actions"].append(what)
        if self.check:
            return None
        try:
            return func(*args, **kwargs)
        except _masterless.MasterlessError as exc:
            self.module.fail_json(msg=str(exc), **self.out)

    def to_systemd(self, changed_files: list[_masterless.File], state_file: Callable[[], _masterless.File],
                   units_changed: bool) -> None:
        q = self.inst.queue_directory
        for file in changed_files:
            self.act(f"write {file.path}", _masterless.write_file, self.module, file)
        package = os.path.join(self.module.params["libexec_dir"], _masterless.PACKAGE)
        if any(f.path.startswith(package + os.sep) for f in changed_files):
            self.act(f"compile {package}", _masterless.compile_library, self.run, self.module.params["python"], package)
        saved = state_file()
        if saved.differs():
            self.act(f"write {saved.path}", _masterless.write_file, self.module, saved)
        if changed_files or units_changed:
            self.act("systemctl daemon-reload", _masterless.systemctl, self.run, "daemon-reload")
        self._route_postfix_start()
        running_master = _masterless.master_pid(q) is not None or any(
            _masterless.active(self.run, u) for u in self.master_units)
        target, holder = self.inst.target, self.inst.holder
        if self.state == "present":
            return
        if self.state == "stopped":
            if running_master:
                self.act("stop master(8)", _masterless.stop_master, self.run, queue_directory=q,
                         config_dir=self.config_dir, units=self.master_units, postfix=self.postfix, timeout=self.timeout)
            if _masterless.active(self.run, target):
                self.act(f"stop {target}", _masterless.stop_masterless, self.run, target=target,
                         slice_unit=self.inst.slice, timeout=self.timeout)
            return
        if running_master:
            self.out["switched"] = True
            self.act("stop master(8)", _masterless.stop_master, self.run, queue_directory=q,
                     config_dir=self.config_dir, units=self.master_units, postfix=self.postfix, timeout=self.timeout)
        if not _masterless.active(self.run, target) or not _masterless.active(self.run, holder + ".service"):
            self._reset_failed()
            self.act(f"start {target}", _masterless.start_masterless, self.run, target=target, holder=holder,
                     queue_directory=q, timeout=self.timeout)
        elif units_changed:
            self._apply_changes()
        elif _masterless.unhealthy(self.run, self.out["units"], self.inst.prefix):
            # Running, but a listener is missing or a unit failed: started again, like a failed service.
            self._reset_failed()
            self.act(f"start {target} (a unit failed or a socket does not listen)", _masterless.systemctl,
                     self.run, "start", target)
        else:
            return
        if not self.check:
            try:
                _masterless.verify_running(self.run, self.out["units"], self.inst.prefix, self.timeout)
            except _masterless.MasterlessError as exc:
                self.module.fail_json(msg=str(exc), **self.out)

    def _reset_failed(self) -> None:
        """Clear the failed state of this instance's units only (also of units no longer generated)."""
        failed = _masterless.failed_units(self.run, self.inst.prefix)
        if failed:
            self.act("reset-failed " + " ".join(failed), _masterless.reset_failed, self.run, failed)

    def _route_postfix_start(self) -> None:
        wrapper = _masterless.script_wrapper(self.inst.daemon_directory, _generator.CONF_DIR)
        if not shutil.which("dpkg-divert"):
            self.module.warn(f"postfix start would start master(8) for a stopped {self.inst.target}: this host has "
                             "no dpkg-divert to route it (use systemctl start)")
            return
        if wrapper.differs() or not _masterless.diverted(self.run, wrapper.path):
            self.act(f"divert {wrapper.path} (postfix start starts the target)", _masterless.divert_script,
                     self.run, self.module, wrapper)

    def _restore_postfix_start(self, this_conf: str) -> None:
        """Postfix's own postfix-script back once no instance runs master-less."""
        path = os.path.join(self.inst.daemon_directory, _masterless.SCRIPT_NAME)
        conf_dir = _generator.CONF_DIR
        others = [n for n in os.listdir(conf_dir) if n.endswith(".conf") and n != this_conf] if os.path.isdir(
            conf_dir) else []
        if not others and shutil.which("dpkg-divert") and _masterless.diverted(self.run, path):
            self.act(f"restore {path}", _masterless.undivert_script, self.run, path)

    def _apply_changes(self) -> None:
        changes = self.out["units_changed"]
        stale = [] if self.check else _masterless.stale_units(self.run, self.inst.prefix)
        if stale:
            self.act("stop " + " ".join(stale), _masterless.systemctl, self.run, "stop", *stale)
        self._reset_failed()
        sockets = [n for n in changes["added"] + changes["removed"] + changes["modified"] if n.endswith(".socket")]
        if sockets:
            # Listeners changed: master(8) rebinds on reload; units must be restarted to rebind.
            self.act(f"restart {self.inst.target}", _masterless.systemctl, self.run, "restart", self.inst.target)
        else:
            self.act(f"start {self.inst.target}", _masterless.systemctl, self.run, "start", self.inst.target)
            self.act(f"reload {self.inst.holder}.service (daemons retire gracefully)", _masterless.systemctl,
                     self.run, "reload", self.inst.holder + ".service")

    def to_master(self, conf_path: str, state_path: str) -> None:
        q, target = self.inst.queue_directory, self.inst.target
        was_masterless = os.path.exists(conf_path) or _masterless.active(self.run, target)
        if was_masterless and (_masterless.active(self.run, target) or
                               not _masterless.slice_empty(self.run, self.inst.slice)):
            self.act(f"stop {target}", _masterless.stop_masterless, self.run, target=target,
                     slice_unit=self.inst.slice, timeout=self.timeout)
            self.out["switched"] = self.state == "started"
        if os.path.exists(conf_path):
            self.act(f"remove {conf_path}", os.unlink, conf_path)
            if os.path.exists(state_path):
                self.act(f"remove {state_path}", os.unlink, state_path)
            self.act("systemctl daemon-reload", _masterless.systemctl, self.run, "daemon-reload")
        self._restore_postfix_start(os.path.basename(conf_path))
        self._reset_failed()  # units that failed while master-less are not-found now: nothing else clears them
        if self.state == "started" and _masterless.master_pid(q) is None:
            self.act("start master(8)", _masterless.start_master, self.run, queue_directory=q,
                     config_dir=self.config_dir, units=self.master_units, postfix=self.postfix, timeout=self.timeout)
        elif self.state == "stopped" and _masterless.master_pid(q) is not None:
            self.act("stop master(8)", _masterless.stop_master, self.run, queue_directory=q,
                     config_dir=self.config_dir, units=self.master_units, postfix=self.postfix, timeout=self.timeout)


def _runner(module: AnsibleModule) -> _masterless.Runner:
    def run(argv: Any) -> tuple[int, str, str]:
        code, out, err = module.run_command(list(argv), environ_update={"LANG": "C", "SYSTEMD_PAGER": ""})
        return code, out, err
    return run


def _current_units(conf_path: str, state_path: str) -> dict[str, str]:
    """The unit set in effect: the module's stored copy while the instance is master-less."""
    if not os.path.exists(conf_path):
        return {}
    try:
        return _generator.split_record(_generator.load_set(state_path))[0]
    except (OSError, ValueError):
        return {}


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
            "max_use_factor": {"type": "int", "default": _units.DEFAULT_MAX_USE_FACTOR},
            "timeout": {"type": "int", "default": 90},
        },
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
