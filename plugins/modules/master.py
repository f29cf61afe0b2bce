#!/usr/bin/python
# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: master
short_description: Manage entries of Postfix's master.cf without disturbing the rest
version_added: 0.1.0
author: mailfleet maintainers (@mailfleet)
description:
  - Adds, changes, comments out or removes entries of C(master.cf) in one Postfix config directory.
  - An entry is identified by O(service) and O(type); C(smtp/inet) and C(smtp/unix) are different entries.
  - The file is edited in place, losslessly. Lines of entries that are not changed stay byte-identical,
    a changed entry differs only where it was changed, and new entries are appended in the column
    style of the file.
  - Give one entry with the top-level options, or many with O(entries). Either way the whole result is
    validated once and written once.
  - Before anything is written the result is validated. The module checks every field itself (errors name
    the line, the field and the allowed values), and that the command of every changed entry is a program in
    C(daemon_directory). Where Postfix is installed, it also writes the result
    into a temporary copy of O(config_dir) and lets Postfix check it there with C(postconf -M) and, when
    running as root, C(postfix check). A configuration that Postfix refuses, or that makes Postfix warn
    about master.cf where it did not before, is not written, and Postfix's message is returned.
  - The file is then replaced atomically, keeping its owner and mode. Nothing is reloaded; notify a
    handler that runs C(postfix reload).
options:
  service:
    description:
      - Service name of the entry (the first column), for example V(smtp), V(submission), V(2525),
        V(127.0.0.1:10025), V([::1]:10026) or V(private/relay-out).
      - Required unless O(entries) is used.
    type: str
  type:
    description:
      - Transport type of the entry (the second column).
      - Required unless O(entries) is used.
    type: str
    choices: [inet, unix, unix-dgram, fifo, pass]
  state:
    description:
      - V(present) makes the entry active, creating it (O(command) is then required) or uncommenting a
        commented-out one, and sets the given fields.
      - V(disabled) comments the entry out together with its continuation lines (its C(-o) overrides
        stay with it), after setting the given fields. Nothing happens when no such entry exists.
      - V(absent) removes the active entry and its continuation lines. A commented-out copy is left alone.
    type: str
    choices: [present, absent, disabled]
    default: present
  private:
    description:
      - The private column, V(y), V(n) or V(-) (Postfix's default, V(y)). Booleans are accepted.
      - C(inet) services cannot be private; new C(inet) entries get V(n).
      - Omitted fields keep their current value; new entries get V(-).
    type: raw
  unpriv:
    description:
      - The unprivileged column, V(y), V(n) or V(-) (Postfix's default, V(y)). Booleans are accepted.
    type: raw
  chroot:
    description:
      - The chroot column, V(y), V(n) or V(-) (V(n), or V(y) when C(compatibility_level) is below 1).
        Booleans are accepted.
    type: raw
  wakeup:
    description:
      - The wakeup column, a number of seconds, optionally followed by V(?) (wake up only after the
        service was used), or V(-) (no wakeup).
    type: raw
  maxproc:
    description:
      - The process limit column, a number (V(0) means no limit), or V(-) for C(default_process_limit).
    type: raw
  command:
    description:
      - The command column, a daemon name relative to C(daemon_directory), for example V(smtpd) or V(pipe).
      - Required to create an entry.
    type: str
  args:
    description:
      - The arguments after the command, without the C(-o) overrides (use O(options) for those), for
        example V([flags=DRXhu, user=vmail, "argv=/usr/bin/maildrop", -d, "${recipient}"]).
      - An argument containing whitespace is written in braces, as C({ two words }).
      - Omitted keeps the current arguments; V([]) removes them.
    type: list
    elements: str
  options:
    description:
      - C(-o name=value) overrides, as a mapping of parameter name to value.
      - A value of V(null) removes that override. Booleans become V(yes)/V(no), lists are joined with commas.
      - A value with whitespace is written as C(-o { name = value }).
      - Overrides that are not mentioned are kept unless O(purge_options) is set.
    type: dict
  purge_options:
    description:
      - Remove the C(-o) overrides of the entry that are not listed in O(options).
    type: bool
    default: false
  entries:
    description:
      - Several entries in one call, each with the same keys as the top-level options. They are applied
        in order, then the result is validated and written once.
      - Mutually exclusive with O(service) and O(type).
    type: list
    elements: dict
    suboptions:
      service:
        description: Service name of the entry, as O(service).
        type: str
        required: true
      type:
        description: Transport type of the entry, as O(type).
        type: str
        required: true
        choices: [inet, unix, unix-dgram, fifo, pass]
      state:
        description: As O(state).
        type: str
        choices: [present, absent, disabled]
        default: present
      private:
        description: As O(private).
        type: raw
      unpriv:
        description: As O(unpriv).
        type: raw
      chroot:
        description: As O(chroot).
        type: raw
      wakeup:
        description: As O(wakeup).
        type: raw
      maxproc:
        description: As O(maxproc).
        type: raw
      command:
        description: As O(command).
        type: str
      args:
        description: As O(args).
        type: list
        elements: str
      options:
        description: As O(options).
        type: dict
      purge_options:
        description: As O(purge_options).
        type: bool
        default: false
  config_dir:
    description:
      - The Postfix config directory that holds C(master.cf) and C(main.cf), for example
        V(/etc/postfix-out) for a secondary instance.
    type: path
    default: /etc/postfix
  backup:
    description:
      - Keep a copy of the previous C(master.cf) next to it, with a timestamp in its name.
    type: bool
    default: false
extends_documentation_fragment:
  - mailfleet.postfix.attributes
  - mailfleet.postfix.attributes.validated
attributes:
  check_mode:
    details:
      - Check mode runs the same validation, Postfix's checks on a temporary copy included, so it fails
        where the real run would fail and reports the same RV(changed_entries).
notes:
  - The resulting master.cf is validated whenever it would change. An edit that would create a duplicate
    O(service)/O(type) pair (master(8) would use only the last one) or a continuation line before the
    first entry (Postfix ignores it) is refused, with its line number. Such lines that the file already
    had are left alone, as Postfix accepts them.
  - Postfix's own checks run on a copy whose C(queue_directory) and C(data_directory) point at scratch
    directories, because C(postfix check) creates and repairs queue directories; the real queue is never
    touched.
seealso:
  - module: mailfleet.postfix.master_info
  - module: mailfleet.postfix.postconf
  - plugin: mailfleet.postfix.master_cf_parse
    plugin_type: filter
  - plugin: mailfleet.postfix.master_cf_render
    plugin_type: filter
  - plugin: mailfleet.postfix.master_cf_entry
    plugin_type: filter
  - name: master(5)
    description: The master.cf format.
    link: https://www.postfix.org/master.5.html
"""

EXAMPLES = r"""
- name: Enable the submission port for authenticated clients
  mailfleet.postfix.master:
    service: submission
    type: inet
    private: n
    chroot: y
    command: smtpd
    options:
      syslog_name: postfix/submission
      smtpd_tls_security_level: encrypt
      smtpd_sasl_auth_enable: true
      smtpd_client_restrictions: [permit_sasl_authenticated, reject]
  notify: Reload postfix

- name: Limit SMTP to 20 processes and drop an override
  mailfleet.postfix.master:
    service: smtp
    type: inet
    maxproc: 20
    options:
      content_filter: null

- name: Comment out the uucp transport, keeping its arguments for later
  mailfleet.postfix.master:
    service: uucp
    type: unix
    state: disabled

- name: A content filter's return path and its transport, in one validated write
  mailfleet.postfix.master:
    config_dir: /etc/postfix-out
    backup: true
    entries:
      - service: "127.0.0.1:10025"
        type: inet
        private: n
        unpriv: n
        chroot: n
        maxproc: 10
        command: smtpd
        options:
          content_filter: ""
          smtpd_banner: $myhostname filtered mail gateway
          receive_override_options: no_unknown_recipient_checks,no_header_body_checks
      - service: maildrop
        type: unix
        unpriv: n
        chroot: n
        command: pipe
        args: [flags=DRXhu, user=vmail, "argv=/usr/bin/maildrop", -d, "${recipient}"]
      - service: relay
        type: unix
        state: absent
"""

RETURN = r"""
changed_entries:
  description:
    - The entries that were (in check mode, would be) changed, as C(service/type).
  returned: always
  type: list
  elements: str
  sample: [submission/inet, smtp/inet]
backup_file:
  description: Name of the backup of the previous master.cf.
  returned: changed and O(backup) is true, outside check mode
  type: str
  sample: /etc/postfix/master.cf.4242.2024-05-01@12:00:00~
checks:
  description:
    - The validations Postfix ran on the staged copy, or why they were skipped.
  returned: when master.cf would change
  type: list
  elements: str
  sample:
    - "postconf -c /etc/postfix -M: Postfix parsed the staged master.cf"
    - "postfix -c /etc/postfix check: passed on the staged copy"
    - "daemon_directory programs: /usr/lib/postfix/sbin has the command of every changed entry"
msg:
  description: A one-line summary.
  returned: always
  type: str
  sample: "/etc/postfix/master.cf: changed submission/inet"
"""

# validate-modules wants DOCUMENTATION, EXAMPLES and RETURN before any import.
from typing import Any  # noqa: E402 - imports follow the documentation (ansible-test validate-modules)

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.mailfleet.postfix.plugins.module_utils._host_config_edit import edit_master, run_module  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import STATES, TYPES  # noqa: E402

_ENTRY: dict[str, dict[str, Any]] = {
    "service": {"type": "str"},
    "type": {"type": "str", "choices": list(TYPES)},
    "state": {"type": "str", "choices": list(STATES), "default": "present"},
    "private": {"type": "raw"},
    "unpriv": {"type": "raw"},
    "chroot": {"type": "raw"},
    "wakeup": {"type": "raw"},
    "maxproc": {"type": "raw"},
    "command": {"type": "str"},
    "args": {"type": "list", "elements": "str"},
    "options": {"type": "dict"},
    "purge_options": {"type": "bool", "default": False},
}


def _argument_spec() -> dict[str, Any]:
    suboptions = {name: dict(spec) for name, spec in _ENTRY.items()}
    suboptions["service"]["required"] = True
    suboptions["type"]["required"] = True
    return {
        **_ENTRY,
        "entries": {"type": "list", "elements": "dict", "options": suboptions},
        "config_dir": {"type": "path", "default": "/etc/postfix"},
        "backup": {"type": "bool", "default": False},
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec=_argument_spec(),
        mutually_exclusive=[("entries", "service"), ("entries", "type")],
        required_one_of=[("entries", "service")],
        required_together=[("service", "type")],
        supports_check_mode=True,
    )
    specs = module.params["entries"] or [{name: module.params[name] for name in _ENTRY}]
    run_module(module, name="master.cf", key="changed_entries",
               edit=lambda text, path: edit_master(text, specs, path=path))


if __name__ == "__main__":
    main()
