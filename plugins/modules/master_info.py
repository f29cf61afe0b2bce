#!/usr/bin/python
# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: master_info
short_description: Read Postfix's master.cf as structured data
version_added: 0.1.0
author: mailfleet maintainers (@mailfleet)
description:
  - Returns every entry of C(master.cf) in one Postfix config directory, active and commented-out, with all
    its fields as written, its line number and its raw text.
  - Each entry also has an C(effective) view with the defaults that Postfix applies for V(-) resolved
    against C(main.cf) of the same directory.
options:
  config_dir:
    description:
      - The Postfix config directory that holds C(master.cf) and C(main.cf).
    type: path
    default: /etc/postfix
extends_documentation_fragment:
  - mailfleet.postfix.attributes
  - mailfleet.postfix.attributes.info_module
notes:
  - Entries with invalid field values make the module fail, naming the line and the field. A duplicate
    service/type pair and a continuation line before the first entry are reported as warnings, because
    Postfix accepts them with a warning.
seealso:
  - module: mailfleet.postfix.master
  - plugin: mailfleet.postfix.master_cf_parse
    plugin_type: filter
    description: The same entries from master.cf text on the controller, without the C(effective) view.
"""

EXAMPLES = r"""
- name: Read master.cf
  mailfleet.postfix.master_info:
  register: master

- name: Services that run chrooted
  ansible.builtin.debug:
    msg: "{{ master.entries | selectattr('enabled') | selectattr('effective.chroot')
             | map(attribute='service') | list }}"

- name: The submission port is enabled with TLS required
  ansible.builtin.assert:
    that:
      - sub | length == 1
      - sub[0].options.smtpd_tls_security_level == 'encrypt'
  vars:
    sub: "{{ master.entries | selectattr('enabled') | selectattr('service', 'eq', 'submission') | list }}"
"""

RETURN = r"""
path:
  description: The master.cf that was read.
  returned: always
  type: str
  sample: /etc/postfix/master.cf
defaults:
  description: The main.cf values used to resolve V(-) fields.
  returned: always
  type: dict
  contains:
    compatibility_level:
      description: C(compatibility_level) from main.cf, V(0) when it is not set.
      type: str
      sample: "3.6"
    default_process_limit:
      description: C(default_process_limit) from main.cf, V(100) when it is not set.
      type: int
      sample: 100
    chroot:
      description: What V(-) in the chroot column means with this compatibility level.
      type: bool
      sample: false
entries:
  description: Every entry in file order.
  returned: always
  type: list
  elements: dict
  contains:
    service:
      description: Service name as written.
      type: str
      sample: submission
    type:
      description: Transport type.
      type: str
      sample: inet
    private:
      description: Private column as written (V(y), V(n) or V(-)).
      type: str
      sample: n
    unpriv:
      description: Unprivileged column as written.
      type: str
      sample: "-"
    chroot:
      description: Chroot column as written.
      type: str
      sample: y
    wakeup:
      description: Wakeup column as written, for example V(60), V(1000?) or V(-).
      type: str
      sample: "-"
    maxproc:
      description: Process limit column as written.
      type: str
      sample: "-"
    command:
      description: The daemon command.
      type: str
      sample: smtpd
    args:
      description: Arguments after the command without the C(-o) overrides, braces removed.
      type: list
      elements: str
      sample: []
    options:
      description: The C(-o) overrides; when a name occurs twice, the last value.
      type: dict
      sample: {syslog_name: postfix/submission, smtpd_tls_security_level: encrypt}
    enabled:
      description: False for a commented-out entry.
      type: bool
      sample: true
    line:
      description: Line number of the first line of the entry.
      type: int
      sample: 19
    raw:
      description: The exact text of the entry, continuation lines included.
      type: str
      sample: "submission inet n       -       y       -       -       smtpd\n  -o syslog_name=postfix/submission\n"
    effective:
      description: The fields as Postfix applies them, with V(-) resolved.
      type: dict
      contains:
        private:
          description: Whether the service is private (V(-) means yes).
          type: bool
        unpriv:
          description: Whether the daemon runs unprivileged (V(-) means yes).
          type: bool
        chroot:
          description: Whether the daemon runs chrooted (V(-) depends on RV(defaults.chroot)).
          type: bool
        wakeup:
          description: Wakeup interval in seconds, V(0) for none.
          type: int
        wakeup_conditional:
          description: True when the wakeup ends in V(?), that is only after the service was first used.
          type: bool
        maxproc:
          description: Process limit, V(0) for no limit (V(-) means RV(defaults.default_process_limit)).
          type: int
"""

# validate-modules wants DOCUMENTATION, EXAMPLES and RETURN before any import.
import os  # noqa: E402
import re  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.mailfleet.postfix.plugins.module_utils._fileops import FileOpsError, read_config  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils._maincf import MainCf, MainCfError  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils._mastercf import MasterCf, MasterCfError  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils._units import (  # noqa: E402
    Instance,
    flag_of,
    maxproc_of,
    wakeup_of,
)


def _instance(main_cf: MainCf) -> Instance:
    # Postfix's built-in compatibility_level is 0: chroot '-' then means y.
    level = main_cf.get("compatibility_level") or "0"
    limit = main_cf.get("default_process_limit") or "100"
    return Instance.from_params({"compatibility_level": level, "default_process_limit": limit})


def _defaults(instance: Instance) -> dict[str, Any]:
    match = re.match(r"\s*(\d+)", instance.compatibility_level)
    return {
        "compatibility_level": instance.compatibility_level,
        "default_process_limit": instance.default_process_limit,
        "chroot": match is not None and int(match.group(1)) < 1,
    }


def describe(doc: MasterCf, instance: Instance) -> list[dict[str, Any]]:
    """Every entry as a dict, with an ``effective`` view of its defaults."""
    out = []
    for entry in doc.entries():
        item = entry.to_dict()
        item.pop("kind")
        seconds, conditional = wakeup_of(entry)
        item["effective"] = {
            "private": flag_of(entry, "private", instance),
            "unpriv": flag_of(entry, "unpriv", instance),
            "chroot": flag_of(entry, "chroot", instance),
            "wakeup": seconds,
            "wakeup_conditional": conditional,
            "maxproc": maxproc_of(entry, instance),
        }
        out.append(item)
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={"config_dir": {"type": "path", "default": "/etc/postfix"}},
        supports_check_mode=True,
    )
    config_dir = module.params["config_dir"]
    path = os.path.join(config_dir, "master.cf")
    try:
        doc = MasterCf.parse(read_config(config_dir, "master.cf"), path=path)
        main_cf = MainCf.parse(read_config(config_dir, "main.cf"), path=os.path.join(config_dir, "main.cf"))
        for entry in doc.entries(enabled=True):
            entry.validate()
        instance = _instance(main_cf)
        entries = describe(doc, instance)
    except (MasterCfError, MainCfError, FileOpsError) as exc:
        module.fail_json(msg=str(exc))
    for warning in doc.warnings:
        module.warn(warning)
    try:
        doc.validate()  # only duplicates are left to find: Postfix warns and uses the last one
    except MasterCfError as exc:
        module.warn(str(exc))
    module.exit_json(changed=False, path=path, defaults=_defaults(instance), entries=entries)


if __name__ == "__main__":
    main()
