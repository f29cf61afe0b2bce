#!/usr/bin/python
# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: instance
short_description: Create, register or remove a Postfix instance
version_added: 0.1.0
author: mailfleet maintainers (@mailfleet)
description:
  - Creates a secondary Postfix instance (its config, queue and data directories) and registers it with the
    primary instance, or removes it again. This is what C(postmulti -e create), C(import) and C(destroy) do,
    with check and diff mode and validation before anything is written.
  - A new instance gets C(main.cf) and C(master.cf) from Postfix's prototypes in C(meta_directory), as
    C(postmulti) builds them. Shared install parameters (C(mail_owner), C(command_directory), ...) are cloned
    from the primary when the primary sets them. Postfix checks the new configuration on a temporary copy
    before the instance is created.
  - The instance's C(main.cf) gets C(multi_instance_name), C(multi_instance_enable), C(queue_directory),
    C(data_directory) and, when asked for, C(multi_instance_group) and C(master_service_disable).
  - The primary's C(main.cf) lists the instance in C(multi_instance_directories), so that C(postmulti -l),
    C(postqueue -c), C(postsuper -c) and C(postconf -c) work for it.
  - Queue and data directories are created with Postfix's own owners and modes by
    C(postfix -c DIR set-permissions). When they drift from C(postfix-files), the next run fixes them.
  - An existing directory with a C(main.cf) and C(master.cf) is imported as it is. Only the instance
    parameters above are changed in it.
  - Nothing is started, stopped or reloaded. The orchestration modules
    (M(mailfleet.postfix.systemd_units), M(mailfleet.postfix.instance_unit)) or the
    P(mailfleet.postfix.instance#role) role do that.
options:
  name:
    description:
      - The instance name, C(multi_instance_name). It must start with V(postfix-).
      - After V(postfix-) come at most 32 ASCII letters, digits, V(_), V(.) and V(-), not starting with V(-),
        and not V(.), V(..) or V(default). The name becomes directory and systemd unit names; C(postmulti)
        allows more characters, but those would be read by systemd or leave the directory.
      - V(-) means the primary instance. It always exists, so the module only returns its directories.
    type: str
    required: true
  state:
    description:
      - V(present) creates or imports the instance and registers it.
      - V(absent) deregisters the instance and removes its config, queue and data directories.
        The instance must be stopped. Removal is refused while the queue holds mail, unless O(force=true).
    type: str
    choices: [present, absent]
    default: present
  config_directory:
    description:
      - The instance's config directory.
      - Defaults to the directory where the instance is already registered, else to the primary's config
        directory with the last component replaced by O(name) (V(/etc/postfix-edge) for V(postfix-edge)), as
        C(postmulti) does.
    type: path
  queue_directory:
    description:
      - The instance's queue directory. Defaults to the instance's current one, else to the primary's
        with the last component replaced by O(name) (V(/var/spool/postfix-edge)).
      - Moving the queue of an instance whose queue holds mail is refused.
    type: path
  data_directory:
    description:
      - The instance's data directory. Defaults like O(queue_directory) (V(/var/lib/postfix-edge)).
    type: path
  group:
    description:
      - C(multi_instance_group) of the instance, for C(postmulti -g). An empty string removes it.
      - Unset leaves the current group alone.
    type: str
  enabled:
    description:
      - C(multi_instance_enable) of the instance. C(postmulti -p start) skips disabled instances.
    type: bool
    default: true
  master_service_disable:
    description:
      - C(master_service_disable) of the instance. An empty string clears it.
      - Unset leaves an existing instance alone. A new instance then gets V(inet), as C(postmulti) gives it, so
        that it does not listen on the network before it is configured.
    type: str
  multi_instance_wrapper:
    description:
      - V(init) does what C(postmulti -e init) does when the primary needs it. It sets C(multi_instance_enable)
        of the primary to V(yes). It sets C(multi_instance_wrapper) to postmulti's wrapper only when the
        wrapper is empty. A wrapper set by someone else is never replaced.
      - V(keep) does not touch either parameter. Use it when another module routes C(postfix start|stop)
        for the instance, as M(mailfleet.postfix.systemd_units) does in master-less mode.
    type: str
    choices: [init, keep]
    default: init
  listen:
    description:
      - TCP addresses this instance is going to serve, as V(ADDRESS:PORT), V([IPV6]:PORT) or a bare V(PORT)
        (every address). Ports may be names such as V(smtp).
      - With O(state=present), the module first reads what every other instance on this host is configured to
        listen on (their C(master.cf) C(inet) entries, C(inet_interfaces), C(inet_protocols) and
        C(master_service_disable)). It refuses, before changing anything, when one of these addresses
        overlaps. V(all) and the wildcard addresses overlap every address on the same port.
      - In check mode an overlap is a warning, not a failure, because a task before this one may be about to
        move the other instance (its change is not on disk yet).
      - The module does not configure the listeners. Set C(inet_interfaces) or C(master.cf) with
        M(mailfleet.postfix.postconf) and M(mailfleet.postfix.master).
    type: list
    elements: str
    default: []
  force:
    description:
      - With O(state=absent), remove the instance even when its queue still holds mail. That mail is lost.
    type: bool
    default: false
  backup:
    description:
      - Keep a copy of each C(main.cf) this module changes, with a timestamp in its name.
    type: bool
    default: false
extends_documentation_fragment:
  - mailfleet.postfix.attributes
  - mailfleet.postfix.attributes.validated
attributes:
  diff_mode:
    details:
      - The diff shows each C(main.cf) and C(master.cf) that is created, changed or removed.
  platform:
    platforms: posix
notes:
  - Needs root. Postfix must be installed.
  - Removal refuses while processes still work in the queue directory (Postfix daemons change into it). Stop
    the instance first.
  - The primary instance is the compiled-in default config directory (C(postconf -d config_directory)),
    as for C(postmulti).
seealso:
  - module: mailfleet.postfix.postconf
  - module: mailfleet.postfix.master
  - name: postmulti(1)
    description: Postfix's own multi-instance manager.
    link: https://www.postfix.org/postmulti.1.html
  - name: MULTI_INSTANCE_README
    description: Managing multiple Postfix instances on a single host.
    link: https://www.postfix.org/MULTI_INSTANCE_README.html
"""

EXAMPLES = r"""
- name: An edge instance beside the primary, listening once configured
  mailfleet.postfix.instance:
    name: postfix-edge
    master_service_disable: ""

- name: An instance whose wrapper is managed by the master-less orchestration
  mailfleet.postfix.instance:
    name: postfix-out
    group: mta
    config_directory: /etc/postfix-out
    queue_directory: /srv/spool/postfix-out
    multi_instance_wrapper: keep

- name: The edge instance, refused if another instance here already serves this address
  mailfleet.postfix.instance:
    name: postfix-edge
    master_service_disable: ""
    listen: ["192.0.2.10:25"]

- name: Remove an instance (refused while its queue holds mail)
  mailfleet.postfix.instance:
    name: postfix-old
    state: absent
"""

RETURN = r"""
name:
  description: The instance name; V(-) for the primary.
  returned: always
  type: str
  sample: postfix-edge
config_directory:
  description: The instance's config directory.
  returned: always
  type: str
  sample: /etc/postfix-edge
queue_directory:
  description: The instance's queue directory.
  returned: always
  type: str
  sample: /var/spool/postfix-edge
data_directory:
  description: The instance's data directory.
  returned: always
  type: str
  sample: /var/lib/postfix-edge
created:
  description: Whether the instance was (in check mode, would be) created.
  returned: always
  type: bool
removed:
  description: Whether the instance was (in check mode, would be) removed.
  returned: always
  type: bool
registered:
  description: Whether the instance is listed in the primary's C(multi_instance_directories) after the run.
  returned: always
  type: bool
queued:
  description: Messages in the instance's queue (C(maildrop), C(incoming), C(active), C(deferred), C(hold), C(corrupt)).
  returned: always
  type: int
  sample: 0
actions:
  description: What was (in check mode, would be) done, in order.
  returned: always
  type: list
  elements: str
  sample:
    - create instance postfix-edge in /etc/postfix-edge from /etc/postfix/main.cf.proto and master.cf.proto
    - register /etc/postfix-edge in /etc/postfix/main.cf (multi_instance_directories)
    - postfix -c /etc/postfix-edge set-permissions (new instance)
backup_files:
  description: Backups of changed C(main.cf) files, by file.
  returned: when O(backup=true) and a main.cf changed, outside check mode
  type: dict
  sample: {/etc/postfix/main.cf: /etc/postfix/main.cf.4242.2026-11-26@12:00:00~}
msg:
  description: A one-line summary.
  returned: always
  type: str
  sample: "postfix-edge: created in /etc/postfix-edge"
"""

# validate-modules wants DOCUMENTATION, EXAMPLES and RETURN before any import.
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_instances import (  # noqa: E402
    InstanceError,
    Request,
    Result,
    run,
)


def _summary(result: Result, check_mode: bool) -> str:
    if not result.changed:
        return f"{result.name}: no change needed"
    verb = "would be" if check_mode else ""
    what = "created" if result.created else "removed" if result.removed else "updated"
    return " ".join(x for x in (f"{result.name}:", verb, what, f"({result.config_directory})") if x)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "config_directory": {"type": "path"},
            "queue_directory": {"type": "path"},
            "data_directory": {"type": "path"},
            "group": {"type": "str"},
            "enabled": {"type": "bool", "default": True},
            "master_service_disable": {"type": "str"},
            "multi_instance_wrapper": {"type": "str", "choices": ["init", "keep"], "default": "init"},
            "listen": {"type": "list", "elements": "str", "default": []},
            "force": {"type": "bool", "default": False},
            "backup": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    request = Request(
        name=p["name"], state=p["state"], config_directory=p["config_directory"], queue_directory=p["queue_directory"],
        data_directory=p["data_directory"], group=p["group"], enabled=p["enabled"],
        master_service_disable=p["master_service_disable"], wrapper=p["multi_instance_wrapper"], force=p["force"],
        backup=p["backup"], listen=tuple(p["listen"]),
    )
    try:
        result = run(request, host=module, check_mode=module.check_mode)
    except InstanceError as exc:
        module.fail_json(msg=str(exc))
    for warning in result.warnings:
        module.warn(warning)
    out: dict[str, Any] = {
        "changed": result.changed, "name": result.name, "config_directory": result.config_directory,
        "queue_directory": result.queue_directory, "data_directory": result.data_directory,
        "created": result.created, "removed": result.removed, "registered": result.registered,
        "queued": result.queued, "actions": result.actions, "msg": _summary(result, module.check_mode),
    }
    if result.backups:
        out["backup_files"] = result.backups
    if module._diff and result.files:
        out["diff"] = [change.diff() for change in result.files]
    module.exit_json(**out)


if __name__ == "__main__":
    main()
