#!/usr/bin/python
# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: chroot
author: mailfleet maintainers (@mailfleet)
version_added: 0.1.0
short_description: Sync the chroot jail of a Postfix instance with what its master.cf needs
description:
  - Computes the jail of one Postfix instance from its master.cf, its main.cf (C(postconf -x)) and this
    host (libc, library directories, C(/etc/nsswitch.conf), who owns C(/dev/log)), exactly as the filter
    P(mailfleet.postfix.master_cf_chroot_plan#filter) does, and makes the jail under C(queue_directory)
    hold exactly that.
  - Copies only what differs (content, mode, owner), atomically. Each copy keeps the permission bits and the
    owner and group of its source (a C(0640 root:postfix) file stays that in the jail; set-uid, set-gid and
    sticky bits are dropped), so nothing is more readable in the jail than on the host. Removes what an earlier run placed
    and the plan no longer needs; a manifest of what this module placed is kept in the jail as
    C(etc/.mailfleet-chroot-manifest). Files it did not place (for example Debian's own copies) are
    overwritten when the plan needs them, never removed otherwise.
  - Never writes into a queue subdirectory (C(maildrop), C(incoming), C(active), C(private), ...),
    never through a symbolic link, and refuses a C(queue_directory) that is not Postfix's (no C(maildrop/)
    owned by C(mail_owner), or not owned by root).
  - With no chrooted entry in master.cf the plan is empty, and everything this module placed earlier is
    removed.
  - With O(verify=true) it checks the jail from inside, the way a chrooted daemon sees it. A child process
    resolves the mail owner, changes to its group and supplementary groups, chroots into the queue
    directory and switches to the mail owner, then looks up O(verify_names) and O(verify_services) (and
    the mail owner, when the jail holds a C(etc/passwd)). The module fails with the lookup that failed.
  - Linux only for the sync (library locations); elsewhere it fails without changing anything and returns
    the plan. Writing the jail and O(verify) need root; without root only check mode works.
options:
  config_dir:
    description:
      - Configuration directory of the instance (C(postconf -c)).
    type: path
    default: /etc/postfix
  state:
    description:
      - V(present) syncs the jail with the plan.
      - V(absent) removes everything the manifest lists, as if no entry were chrooted.
    type: str
    choices: [present, absent]
    default: present
  extra_files:
    description:
      - Further host files to copy into the jail, as absolute paths below C(/etc), C(/lib*), C(/usr) or
        C(/dev); the jail path is the same path below C(queue_directory).
      - The equivalent of Debian's C(chroot_extra_files).
      - A file that is not world-readable on the host is refused unless O(allow_private_extra_files) is set.
        C(/etc/shadow), C(/etc/gshadow), C(/etc/sudoers), C(/etc/ssl/private/*) and SSH host keys are always
        refused; no chrooted Postfix daemon reads them.
    type: list
    elements: path
    default: []
  allow_private_extra_files:
    description:
      - Copy O(extra_files) that are not world-readable on the host (for example a C(0640 root:postfix) file).
        The copy keeps the source's mode and owner, but it is one more place where the file can be read.
    type: bool
    default: false
  reload:
    description:
      - When the jail changed, reload the instance's running master (C(SIGHUP), as C(postfix reload) does).
      - Daemons that already run keep what they loaded from the old jail; Postfix initializes the resolver once
        per process, so a repaired C(resolv.conf) is only used by daemons started after it.
    type: bool
    default: true
  verify:
    description:
      - After syncing, look names up from inside the jail as the mail owner and fail when a lookup fails.
      - Lookups that the plan does not support are skipped (no host name lookups when no chrooted daemon
        resolves names, no services lookup without C(etc/services) in the jail).
      - In check mode it runs only when nothing would change.
    type: bool
    default: false
  verify_names:
    description:
      - Host names to resolve with C(getaddrinfo()) from inside the jail. Use a name in C(/etc/hosts) to
        test the files source and a name only DNS knows to test C(resolv.conf) and the DNS source.
    type: list
    elements: str
    default: [localhost]
  verify_services:
    description:
      - TCP service names to look up with C(getservbyname()) from inside the jail.
    type: list
    elements: str
    default: [smtp]
  verify_timeout:
    description:
      - Seconds the lookups from inside the jail may take together.
    type: int
    default: 30
extends_documentation_fragment:
  - mailfleet.postfix.attributes
  - mailfleet.postfix.attributes.full
attributes:
  diff_mode:
    details:
      - Shows the content of changed C(etc/) files and a list of every changed path with its checksum.
  platform:
    support: full
    platforms: posix
    details:
      - The jail is synced on Linux (glibc or musl) only; on other systems the module returns the plan and fails.
notes:
  - Debian's C(postfix@.service) runs its own C(configure-instance.sh) at every start, which copies a
    fixed set of files; M(mailfleet.postfix.instance_unit) replaces that unit for managed instances and
    installs a C(.path) unit that refreshes the jail when a copied host file changes.
  - Time zone, C(/dev/log) and CA files are read before chroot by Postfix itself; see the collection's
    chroot guide for what each jail item is for.
seealso:
  - plugin: mailfleet.postfix.master_cf_chroot_plan
    plugin_type: filter
  - module: mailfleet.postfix.instance_unit
  - name: master(5), the chroot column
    link: https://www.postfix.org/master.5.html
    description: Which daemons may run chrooted.
"""

EXAMPLES = r"""
- name: Sync the jail of the default instance and check lookups from inside it
  mailfleet.postfix.chroot:
    verify: true
    verify_names: [localhost, relay.example.net]

- name: Sync the jail of a second instance, with an extra file
  mailfleet.postfix.chroot:
    config_dir: /etc/postfix-edge
    extra_files: [/etc/mailname]

- name: Remove what the module placed in a jail
  mailfleet.postfix.chroot:
    config_dir: /etc/postfix-old
    state: absent
"""

RETURN = r"""
queue_directory:
  description: The jail (the instance's C(queue_directory)).
  returned: always
  type: str
  sample: /var/spool/postfix
plan:
  description: The plan, as P(mailfleet.postfix.master_cf_chroot_plan#filter) computes it, plus the chrooted entries.
  returned: always
  type: dict
  contains:
    chrooted:
      description: Active entries that run chrooted (C(entry), C(line), C(command), C(chroot), C(daemon)).
      type: list
      elements: dict
    contents:
      description: Jail items (C(path), C(kind), C(source), C(reasons)); see the filter for the fields.
      type: list
      elements: dict
    warnings:
      description: Where the jail will behave differently from the host.
      type: list
      elements: str
    notes:
      description: Informational findings, for example nsswitch sources the host does not have either.
      type: list
      elements: str
host:
  description: Facts of this host the plan was computed from; pass them to the filter as its C(host) argument.
  returned: always
  type: dict
created:
  description: Jail paths (relative to RV(queue_directory)) that were, or in check mode would be, created.
  returned: always
  type: list
  elements: str
  sample: [etc/resolv.conf, lib/x86_64-linux-gnu/libnss_dns.so.2]
updated:
  description: Jail paths whose content, mode or owner was, or would be, corrected.
  returned: always
  type: list
  elements: str
removed:
  description: Jail paths placed by an earlier run that are no longer needed and were, or would be, removed.
  returned: always
  type: list
  elements: str
reloaded:
  description: Whether the instance's master was reloaded because the jail changed.
  returned: always
  type: bool
directories:
  description: Directories that were, or would be, created in the jail.
  returned: always
  type: list
  elements: str
verify:
  description: Lookups made from inside the jail (C(check), C(ok), C(detail)); empty unless O(verify=true).
  returned: always
  type: list
  elements: dict
  sample: [{check: host localhost, ok: true, detail: "127.0.0.1, ::1"}, {check: service smtp/tcp, ok: true, detail: "25"}]
"""

# Imports follow the documentation (ansible-test validate-modules), hence E402.
from typing import Any  # noqa: E402 - imports follow the documentation (ansible-test validate-modules)

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.mailfleet.postfix.plugins.module_utils import _classic_jail, _host  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "config_dir": {"type": "path", "default": "/etc/postfix"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "extra_files": {"type": "list", "elements": "path", "default": []},
            "allow_private_extra_files": {"type": "bool", "default": False},
            "reload": {"type": "bool", "default": True},
            "verify": {"type": "bool", "default": False},
            "verify_names": {"type": "list", "elements": "str", "default": ["localhost"]},
            "verify_services": {"type": "list", "elements": "str", "default": ["smtp"]},
            "verify_timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    try:
        result: dict[str, Any] = _classic_jail.run(module.params, _host.ModuleRunner(module), check_mode=module.check_mode,
                                                   diff=module._diff, warn=module.warn)
    except _classic_jail.JailFailure as exc:
        module.fail_json(msg=str(exc), **exc.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
