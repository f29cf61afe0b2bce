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
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Shows the content of changed C(etc/) files and a list of every changed path with its checksum.
  idempotent:
    support: full
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
import os  # noqa: E402
import platform  # noqa: E402
import pwd  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.mailfleet.postfix.plugins.module_utils._chroot import (  # noqa: E402
    ChrootPlanError,
    HostFacts,
    Plan,
    plan_jail,
)
from ansible_collections.mailfleet.postfix.plugins.module_utils._chroot_sync import (  # noqa: E402
    JailError,
    check_queue_directory,
    probe_host,
    reload_master,
    sync,
    verify,
)
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


def capath_candidates(params: dict[str, str], master_text: str) -> list[str]:
    """Every CApath-like value (main.cf and -o overrides), so the probe reports whether it exists."""
    values = [v for k, v in params.items() if k.endswith("_CApath")]
    values += [word.split("=", 1)[1] for word in master_text.split() if "_CApath=" in word]
    return [v.strip() for v in values if v.strip().startswith("/")]


def verify_checks(module: AnsibleModule, plan: Plan, owner: str) -> tuple[list[str], list[str], list[str]]:
    """Only what the jail is meant to support: a jail without lookups has nothing to verify."""
    paths = {item.path for item in plan.items}
    names = module.params["verify_names"] if paths & {"etc/hosts", "etc/resolv.conf"} else []
    services = module.params["verify_services"] if "etc/services" in paths else []
    users = [owner] if "etc/passwd" in paths else []
    return names, services, users


def check_extra_files(module: AnsibleModule) -> None:
    """Refuse, before anything is read or written, an extra file that only some users may read."""
    if module.params["allow_private_extra_files"]:
        return
    for path in module.params["extra_files"]:
        try:
            mode = os.stat(path).st_mode
        except (OSError, ValueError):  # missing: the plan warns; NUL: the plan refuses
            continue
        if not mode & 0o004:
            module.fail_json(msg=f"extra_files: {path} is not world-readable (mode {mode & 0o7777:04o}); nothing was "
                                 "changed. Copying it into the jail makes it readable to a compromised daemon: set "
                                 "allow_private_extra_files to copy it anyway")


def run(module: AnsibleModule) -> dict[str, Any]:
    config_dir = module.params["config_dir"]
    check_extra_files(module)
    master_path = os.path.join(config_dir, "master.cf")
    try:
        # Postfix reads master.cf as bytes: keep what is not UTF-8 (a Latin-1 comment) as it is.
        with open(master_path, encoding="utf-8", errors="surrogateescape") as handle:
            master_text = handle.read()
    except OSError as exc:
        module.fail_json(msg=f"cannot read {master_path}: {exc.strerror}")
    params = postconf(module, config_dir)
    facts = probe_host(capath_candidates(params, master_text) + list(module.params["extra_files"]))
    result: dict[str, Any] = {"changed": False, "host": facts, "created": [], "updated": [], "removed": [],
                              "directories": [], "verify": [], "reloaded": False}
    try:
        plan = plan_jail(master_text, params, HostFacts.from_dict(facts),
                         extra_files=module.params["extra_files"], path=master_path)
    except ChrootPlanError as exc:
        module.fail_json(msg=f"cannot plan the jail of {config_dir}: {printable(str(exc))}", **result)
    if module.params["state"] == "absent":
        plan.items = []
    queue = plan.queue_directory
    result.update(queue_directory=queue, plan=plan.to_dict())
    for warning in plan.warnings:
        module.warn(warning)
    if platform.system() != "Linux":
        module.fail_json(msg=f"{platform.system()}: syncing a jail is implemented for Linux only (library "
                             f"locations); nothing was changed in {queue}. The plan is in 'plan'.", **result)
    owner = params.get("mail_owner", "postfix")
    try:
        owner_uid = pwd.getpwnam(owner).pw_uid
    except KeyError:
        module.fail_json(msg=f"mail_owner '{owner}' of {config_dir} does not exist on this host", **result)
    if os.geteuid() != 0 and not module.check_mode:
        module.fail_json(msg=f"must run as root to write the jail {queue} (root-owned) and to chroot for verify; "
                             "nothing was changed. Use become: true, or check mode to see the plan.", **result)
    try:
        check_queue_directory(queue, owner_uid)
        synced = sync(queue, [item.to_dict() for item in plan.items], check=module.check_mode, diff=module._diff)
    except (JailError, OSError) as exc:
        module.fail_json(msg=f"cannot sync the jail {queue}: {exc}", **result)
    result.update(synced.to_dict(), changed=synced.changed)
    if synced.changed and module.params["reload"] and not module.check_mode:
        result["reloaded"] = reload_master(queue)
    for warning in synced.warnings:
        module.warn(warning)
    if module._diff:
        summary = {"before_header": f"{queue} (jail)", "after_header": f"{queue} (jail)",
                   "before": "".join(line + "\n" for line in synced.before),
                   "after": "".join(line + "\n" for line in synced.after)}
        result["diff"] = [summary] + synced.diff
    if module.params["verify"] and module.check_mode and os.geteuid() != 0:
        module.warn("verify skipped: entering the jail as the mail owner needs root")
    elif module.params["verify"] and not (module.check_mode and synced.changed):
        names, services, users = verify_checks(module, plan, owner)
        if not (names or services or users):
            return result
        try:
            checks = verify(queue, owner, names=names, services=services, users=users,
                            timeout=module.params["verify_timeout"])
        except JailError as exc:
            module.fail_json(msg=str(exc), **result)
        result["verify"] = [c.to_dict() for c in checks]
        failed = [c for c in checks if not c.ok]
        if failed:
            module.fail_json(msg=f"lookups inside the jail {queue} as {owner} failed: "
                                 + "; ".join(f"{c.name}: {c.detail}" for c in failed), **result)
    return result


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
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
