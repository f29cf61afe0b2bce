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
  - Entries with invalid field values make the module fail, naming the line and the field, and so does a
    C(compatibility_level) or C(inet_protocols) that master(8) refuses to start with.
  - A duplicate service/type pair and a continuation line before the first entry are reported as warnings,
    because Postfix accepts them with a warning; for a duplicate, master(8) runs the last entry and the
    warning names both lines.
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
        runs:
          description:
            - Whether master(8) runs this entry. False for a commented-out entry, an entry that
              C(master_service_disable) names (or an C(inet) entry when C(inet_protocols) is empty), and
              an entry that a later entry for the same service replaces.
          type: bool
"""

# validate-modules wants DOCUMENTATION, EXAMPLES and RETURN before any import.
import os  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.mailfleet.postfix.plugins.module_utils._host_config import FileOpsError, read_config  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_maincf import MainCf, MainCfError  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import MasterCf, MasterCfError  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_semantics import (  # noqa: E402
    Facts,
    chroot_default,
    columns,
    running_entries,
)


def _facts(main_cf: MainCf) -> Facts:
    """main.cf as written; Postfix's built-in defaults for what it does not set."""
    names = ("compatibility_level", "default_process_limit", "inet_protocols", "master_service_disable")
    return Facts.from_mapping({n: main_cf.get(n) for n in names}, source=main_cf.path)


def _defaults(facts: Facts) -> dict[str, Any]:
    return {
        "compatibility_level": facts.compatibility_level,
        "default_process_limit": facts.default_process_limit,
        "chroot": chroot_default(facts),
    }


def describe(doc: MasterCf, facts: Facts) -> tuple[list[dict[str, Any]], list[str]]:
    """Every entry as a dict, with an ``effective`` view of its defaults, and master(8)'s warnings."""
    running, warnings = running_entries(doc, facts, path=doc.path)
    runs = set(map(id, running))
    out = []
    for entry in doc.entries():
        item = entry.to_dict()
        item.pop("kind")
        cols = columns(entry, facts)
        item["effective"] = {
            "private": cols.private,
            "unpriv": cols.unpriv,
            "chroot": cols.chroot,
            "wakeup": cols.wakeup,
            "wakeup_conditional": cols.conditional,
            "maxproc": cols.maxproc,
            "runs": id(entry) in runs,
        }
        out.append(item)
    return out, warnings


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
        facts = _facts(main_cf)
        entries, warnings = describe(doc, facts)
        defaults = _defaults(facts)
    except (MasterCfError, MainCfError, FileOpsError) as exc:
        module.fail_json(msg=str(exc))
    for warning in doc.warnings + warnings:  # Postfix accepts these with a warning
        module.warn(warning)
    module.exit_json(changed=False, path=path, defaults=defaults, entries=entries)


if __name__ == "__main__":
    main()
