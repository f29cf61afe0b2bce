#!/usr/bin/python
# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: postconf
short_description: Set or remove main.cf parameters of one Postfix config directory
version_added: 0.1.0
author: mailfleet maintainers (@mailfleet)
description:
  - Sets or removes parameters in C(main.cf) of one Postfix config directory, for the primary instance or
    any other.
  - The file is edited in place, losslessly. Comments, blank lines and other parameters stay
    byte-identical. A changed parameter is rewritten on its own line or lines, and a new one is appended.
  - All O(settings) are applied, validated and written at once. Where Postfix is installed, the result is
    first checked by Postfix on a temporary copy of O(config_dir) (C(postconf -M) and, as root,
    C(postfix check)). A configuration that Postfix refuses is not written, and its message is returned.
    New warnings, such as an unused parameter, are passed on as warnings.
  - The file is replaced atomically, keeping its owner and mode. Nothing is reloaded.
options:
  settings:
    description:
      - Parameters to set, as a mapping of name to value.
      - A value of V(null) removes the parameter, so Postfix's default applies again.
      - Booleans become V(yes)/V(no), numbers are written as they are, and lists are joined with
        C(", ").
      - A value that differs from the current one only in whitespace counts as unchanged.
      - When a parameter is defined more than once, the last definition is changed (it is the one Postfix
        uses). Removing a parameter removes every definition.
    type: dict
    required: true
  config_dir:
    description:
      - The Postfix config directory that holds C(main.cf) and C(master.cf).
    type: path
    default: /etc/postfix
  backup:
    description:
      - Keep a copy of the previous C(main.cf) next to it, with a timestamp in its name.
    type: bool
    default: false
extends_documentation_fragment:
  - mailfleet.postfix.attributes
  - mailfleet.postfix.attributes.validated
notes:
  - Values are not expanded or checked against Postfix's list of parameters. Postfix's own warning about an
    unused parameter is shown as a warning.
seealso:
  - module: mailfleet.postfix.master
  - module: mailfleet.postfix.master_info
  - name: postconf(5)
    description: The main.cf parameters.
    link: https://www.postfix.org/postconf.5.html
"""

EXAMPLES = r"""
- name: Relay through the delivery tier and accept mail for two domains
  mailfleet.postfix.postconf:
    settings:
      relayhost: "[delivery.example.net]:25"
      relay_domains: [example.org, example.net]
      smtpd_tls_security_level: may
      smtputf8_enable: false
  notify: Reload postfix

- name: Back to Postfix's default banner, in a secondary instance
  mailfleet.postfix.postconf:
    config_dir: /etc/postfix-out
    backup: true
    settings:
      smtpd_banner: null
"""

RETURN = r"""
changed_parameters:
  description: Names of the parameters that were (in check mode, would be) set or removed.
  returned: always
  type: list
  elements: str
  sample: [relayhost, relay_domains]
backup_file:
  description: Name of the backup of the previous main.cf.
  returned: changed and O(backup) is true, outside check mode
  type: str
  sample: /etc/postfix/main.cf.4242.2024-05-01@12:00:00~
checks:
  description: The validations Postfix ran on the staged copy, or why they were skipped.
  returned: when main.cf would change
  type: list
  elements: str
  sample: ["postconf -c /etc/postfix -M: Postfix parsed the staged master.cf"]
msg:
  description: A one-line summary.
  returned: always
  type: str
  sample: "/etc/postfix/main.cf: changed relayhost, relay_domains"
"""

# validate-modules wants DOCUMENTATION, EXAMPLES and RETURN before any import.
from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - imports follow the documentation

from ansible_collections.mailfleet.postfix.plugins.module_utils._host_config_edit import edit_main, run_module  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "settings": {"type": "dict", "required": True},
            "config_dir": {"type": "path", "default": "/etc/postfix"},
            "backup": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    settings = module.params["settings"]
    run_module(module, name="main.cf", key="changed_parameters",
               edit=lambda text, path: edit_main(text, settings, path=path))


if __name__ == "__main__":
    main()
