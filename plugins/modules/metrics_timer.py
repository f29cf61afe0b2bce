#!/usr/bin/python
# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: metrics_timer
author: mailfleet maintainers (@mailfleet)
version_added: 0.1.0
short_description: A systemd timer that writes every Postfix instance's status for node_exporter
description:
  - Installs C(mailfleet-postfix-metrics.service) and C(mailfleet-postfix-metrics.timer). Every O(interval)
    seconds after the previous run ends, the service writes the figures of M(mailfleet.postfix.instance_info)
    for every instance on the host (both modes) to O(path) in the Prometheus text format, atomically, for
    node_exporter's textfile collector.
  - One timer per host covers every instance. The service runs as root (the queue directories are readable
    by the mail owner only) in a sandbox that can write only the directory of O(path), has no network
    (C(systemctl), C(systemd-analyze) and C(postqueue) use sockets in the file system), and keeps four
    capabilities (C(CAP_DAC_OVERRIDE), C(CAP_DAC_READ_SEARCH), C(CAP_SETUID), C(CAP_SETGID)). It runs at
    C(Nice=10) with idle I/O priority.
  - The program it runs is the collection's library package in O(libexec_dir) (the one the orchestration
    modules install), started as C(python3 -I -S). When a run fails, the previous file stays; node_exporter's
    C(node_textfile_mtime_seconds) shows it is no longer refreshed, and C(journalctl -u
    mailfleet-postfix-metrics) says why.
options:
  state:
    description:
      - V(present) installs, enables and starts the timer. V(absent) stops and removes the units and the metrics
        file they wrote (the library package stays; other modules use it).
    type: str
    choices: [present, absent]
    default: present
  path:
    description:
      - The metrics file. It must end in C(.prom) (the collector reads nothing else) and be made of letters,
        digits and C(. _ @ + - /) (it is written into the unit as it is). Its directory is created when missing
        (mode 0755); an existing one keeps its mode and owner. A previous O(path) is removed when it changes.
      - The service may write that directory (C(ReadWritePaths=)), so it must be a directory of its own, not a
        system directory such as C(/etc) or C(/var/lib), and not reached through a symbolic link.
      - The file is root's, mode 0644, whoever owns the directory. The directory's owner (node_exporter's user,
        say) can still replace the file between two runs, so the figures are as trustworthy as that user.
    type: path
    default: /var/lib/prometheus/node-exporter/mailfleet_postfix.prom
  interval:
    description:
      - Seconds from the end of one run to the start of the next, 10 to 86400.
    type: int
    default: 60
  queue_details:
    description:
      - Read C(postqueue -j) in each run for the oldest deferred message and the deferral reasons. The default
        counts the queue files only, which stays fast on any queue (the collection's C(docs/benchmarks.md)).
    type: bool
    default: false
  exposure:
    description:
      - Score the network-facing units with C(systemd-analyze security) in each run.
    type: bool
    default: true
  python:
    description:
      - The interpreter the service runs as root. It and its directory must be root's alone (not writable by
        another user), so not a virtualenv of a user; Ansible's interpreter is not assumed for that reason.
    type: path
    default: /usr/bin/python3
  libexec_dir:
    description:
      - Where the library package and the C(status) launcher are installed.
    type: path
    default: /usr/libexec/mailfleet-postfix
  unit_dir:
    description:
      - Where the unit files are written.
    type: path
    default: /etc/systemd/system
extends_documentation_fragment:
  - mailfleet.postfix.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports the actions a real run would take, and writes nothing.
  diff_mode:
    support: full
    details:
      - Shows the changes of the unit files, the launcher and the package.
  idempotent:
    support: full
  platform:
    support: full
    platforms: posix
    details:
      - Needs systemd. Without it running, the files are written and nothing is started.
notes:
  - Run it as root (C(become)).
  - The role M(mailfleet.postfix.instance) runs this module when C(postfix_instance_metrics_path) is set.
seealso:
  - module: mailfleet.postfix.instance_info
  - name: node_exporter textfile collector
    description: How node_exporter reads C(.prom) files.
    link: https://github.com/prometheus/node_exporter#textfile-collector
"""

EXAMPLES = r"""
- name: Write the status of every instance for node_exporter every minute
  mailfleet.postfix.metrics_timer:
  become: true

- name: Every five minutes, with the oldest deferred message and the deferral reasons
  mailfleet.postfix.metrics_timer:
    path: /var/lib/node_exporter/textfile/postfix.prom
    interval: 300
    queue_details: true
  become: true

- name: Remove the timer and its file
  mailfleet.postfix.metrics_timer:
    state: absent
  become: true
"""

RETURN = r"""
path:
  description: The metrics file (normalized).
  returned: always
  type: str
  sample: /var/lib/prometheus/node-exporter/mailfleet_postfix.prom
units:
  description: The units of the timer.
  returned: always
  type: list
  elements: str
  sample: [mailfleet-postfix-metrics.service, mailfleet-postfix-metrics.timer]
actions:
  description: What was done (in check mode, what would be done), in order.
  returned: always
  type: list
  elements: str
  sample: [write /etc/systemd/system/mailfleet-postfix-metrics.timer, reload systemd]
"""

from typing import Any  # noqa: E402 - imports follow the documentation (ansible-test validate-modules)

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.mailfleet.postfix.plugins.module_utils import _host  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils import _status_timer as timer  # noqa: E402


def run(module: AnsibleModule) -> dict[str, Any]:
    p, runner = module.params, _host.ModuleRunner(module)
    done: list[str] = []
    try:
        wanted = timer.checked(timer.Wanted(
            state=p["state"], path=p["path"], interval=p["interval"], queue_details=p["queue_details"],
            exposure=p["exposure"], python=p["python"], libexec=p["libexec_dir"], unit_dir=p["unit_dir"]))
        problems = [] if wanted.state == "absent" else timer.host_problems(wanted)
        if problems:
            raise timer.TimerError("; ".join(problems))
        booted = _host.booted()
        files = _host.Writer(check_mode=True)  # observes and records the diff; the plan writes
        changes = [s for s in timer.file_specs(wanted) if files.ensure(s)]
        plan = timer.plan(wanted, timer.observe(runner, wanted, booted), changes, booted)
        _host.execute(plan, timer.operations(runner), check_mode=module.check_mode, done=done)
    except timer.TimerError as exc:
        module.fail_json(msg=str(exc))
    except (_host.CommandError, _host.HostError, OSError) as exc:
        module.fail_json(msg=_host.failed_after(exc, done), actions=done)
    result: dict[str, Any] = {"changed": bool(plan), "path": wanted.path, "actions": done,
                              "units": [f"{timer.UNIT}.service", f"{timer.UNIT}.timer"]}
    if module._diff:
        result["diff"] = files.diffs
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "path": {"type": "path", "default": "/var/lib/prometheus/node-exporter/mailfleet_postfix.prom"},
            "interval": {"type": "int", "default": 60},
            "queue_details": {"type": "bool", "default": False},
            "exposure": {"type": "bool", "default": True},
            "python": {"type": "path", "default": "/usr/bin/python3"},
            "libexec_dir": {"type": "path", "default": "/usr/libexec/mailfleet-postfix"},
            "unit_dir": {"type": "path", "default": "/etc/systemd/system"},
        },
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
