#!/usr/bin/python
# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: instance_info
author: mailfleet maintainers (@mailfleet)
version_added: 0.1.0
short_description: Health, queues, deliveries and exposure of every Postfix instance on a host
description:
  - Reports every Postfix instance on the host, the primary and those in its C(multi_instance_directories),
    in either orchestration mode. For each it returns the mode, whether it is enabled and running, its units
    and their state (failed units named), its TCP listeners, the messages in each queue, the age of the oldest
    deferred message, the most frequent deferral reasons, the time of the last delivery, and the
    C(systemd-analyze security) exposure of the units that accept connections from the network.
  - V(masterless) mode is an instance the C(systemd_units) module set up (the generator has
    C(/etc/mailfleet-postfix/instances/NAME.conf)); its units are the stored unit set, C(postfix-NAME.target)
    and the holder. Otherwise the mode is V(master), and the unit running master(8) is the first active one of
    the collection's C(postfix-NAME-master.service) (M(mailfleet.postfix.instance_unit)) and the
    distribution's (C(postfix@INSTANCE.service), C(postfix.service)); when none is active, the first of them
    that exists, in that order; else none. A master started by hand still counts as running when
    C(pid/master.pid) names a root process called C(master) working in the queue directory (the file stays
    after master stops); when the unit exists but is stopped, the instance is then degraded.
  - "Queue counts are files per queue directory (C(maildrop), C(incoming), C(active), C(deferred), C(hold),
    hashed subdirectories included, links not followed): no Postfix process is needed and it is fast. Without
    the rights to read the queue (not root) they come from C(postqueue -j) instead."
  - The oldest deferred message and the deferral reasons come from C(postqueue -c DIR -j), read line by line
    as it is written (a queue of 100,000 messages is never held in memory; the collection's
    C(docs/benchmarks.md) has the times). As root, postqueue reads the queue directly when the instance is
    down. Reasons are counted per recipient and shortened to 200 characters.
  - The last delivery is the newest line tagged by one of the instance's delivery agents (C(SYSLOG_NAME/smtp),
    C(lmtp), C(local), C(virtual), C(pipe)) whose status after the recipient addresses is C(sent), read backwards from the end of the mail log
    (at most 16 MiB of it). The log is O(mail_logs), else the instance's C(maillog_file), C(/var/log/mail.log)
    and C(/var/log/maillog), whichever are readable. Without a readable log (the journal only) it is null.
  - Exposure is C(systemd-analyze security) of the loaded units, drop-ins included; network-facing are the
    inet listeners on an address other than loopback. In V(master) mode that is the unit running master(8);
    in V(masterless) mode the service of each such inet entry (a template as its instance C(@1)).
  - With O(metrics_path) it also writes the figures in the Prometheus text format for node_exporter's
    textfile collector, atomically (a scrape never sees a partial file). This is the only change it makes.
options:
  instances:
    description:
      - The instances to report, by C(multi_instance_name) (V(-) for the primary). Empty reports every
        instance.
    type: list
    elements: str
    default: []
  queue_details:
    description:
      - Run C(postqueue -j) for the oldest deferred message and the deferral reasons. V(false) only counts
        the queue files (much faster on a large queue; RV(instances[].oldest_deferred) and
        RV(instances[].deferral_reasons) are then empty).
    type: bool
    default: true
  reasons:
    description:
      - How many of the most frequent deferral reasons to return per instance.
    type: int
    default: 5
  mail_logs:
    description:
      - Mail logs to search for the last delivery. Empty means the instance's C(maillog_file), then
        C(/var/log/mail.log) and C(/var/log/maillog).
    type: list
    elements: path
    default: []
  exposure:
    description:
      - Score the network-facing units with C(systemd-analyze security) (needs systemd running).
    type: bool
    default: true
  metrics_path:
    description:
      - Write the figures in the Prometheus text exposition format to this file (mode 0644), for
        node_exporter's textfile collector (its default directory on Debian is
        C(/var/lib/prometheus/node-exporter/)). The name must end in C(.prom) for the collector to read it.
      - Labels name the Postfix instance (C(postfix_instance)), never the host. Check mode writes nothing.
    type: path
extends_documentation_fragment:
  - mailfleet.postfix.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads only; with O(metrics_path), reports whether the file would change without writing it.
  diff_mode:
    support: full
    details:
      - Shows the metrics file's change when O(metrics_path) is set.
  idempotent:
    support: partial
    details:
      - Reads only, except the metrics file, which changes whenever a figure or an age changes.
  platform:
    support: full
    platforms: posix
    details:
      - Unit states and exposure need systemd running; without it units are empty and exposure is null.
notes:
  - Run it as root (C(become)); without root the queue counts come from C(postqueue) and unreadable mail
    logs give no last delivery.
seealso:
  - module: mailfleet.postfix.instance
  - module: mailfleet.postfix.instance_unit
  - module: mailfleet.postfix.systemd_units
"""

EXAMPLES = r"""
- name: Read every instance's status
  mailfleet.postfix.instance_info:
  become: true
  register: status

- name: Fail when an instance is down or has deferred mail older than an hour
  ansible.builtin.assert:
    that:
      - status.instances | selectattr('health', 'eq', 'down') | list | length == 0
      - status.instances | selectattr('oldest_deferred_age', 'gt', 3600) | list | length == 0
    fail_msg: "{{ status.instances | selectattr('problems') | map(attribute='problems') | list }}"

- name: Write the metrics for node_exporter, counting files only
  mailfleet.postfix.instance_info:
    queue_details: false
    exposure: false
    metrics_path: /var/lib/prometheus/node-exporter/mailfleet_postfix.prom
  become: true
"""

RETURN = r"""
instances:
  description: Every instance reported, problems first (down, then degraded), then by deferred messages.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: C(multi_instance_name), V(-) for the primary instance.
      type: str
      sample: postfix-edge
    short_name:
      description: The name in unit names, V(default) for the primary.
      type: str
      sample: edge
    config_directory:
      description: The instance's configuration directory.
      type: str
    queue_directory:
      description: The instance's queue directory.
      type: str
    mode:
      description: V(masterless) (systemd runs each daemon) or V(master) (master(8) does).
      type: str
      sample: masterless
    supervisor:
      description: The unit that runs the instance (the target in V(masterless) mode); null when none exists.
      type: str
      sample: postfix-edge.target
    enabled:
      description: Whether RV(instances[].supervisor) starts at boot; null without it or without systemd.
      type: bool
    running:
      description: Whether the instance runs (its target and holder are active; or master(8) runs).
      type: bool
    units:
      description: The instance's units that exist, with C(name), C(load), C(active) and C(sub) state.
      type: list
      elements: dict
    failed_units:
      description: Names of the instance's units in the failed state.
      type: list
      elements: str
      sample: [postfix-edge-smtp-inet@3.service]
    listeners:
      description:
        - TCP endpoints of the inet entries master(8) would run, with C(service), C(command), C(address)
          (V(*) for every address), C(port) and C(scope) (V(loopback), V(private), V(public), V(wildcard), ...).
      type: list
      elements: dict
      sample: [{service: smtp, command: postscreen, address: "*", port: "25", scope: wildcard}]
    queues:
      description: Messages per queue.
      type: dict
      sample: {maildrop: 0, incoming: 0, active: 2, deferred: 1532, hold: 0}
    queue_total:
      description: Messages in all five queues.
      type: int
    queue_source:
      description: Where the counts come from, V(directories) or V(postqueue); null when neither could be read.
      type: str
    oldest_deferred:
      description: Arrival time of the oldest deferred message (ISO 8601, UTC); null without deferred mail.
      type: str
      sample: "2026-12-06T08:15:02+00:00"
    oldest_deferred_age:
      description: Its age in seconds.
      type: int
    deferral_reasons:
      description: The most frequent deferral reasons, most frequent first, with the number of C(recipients).
      type: list
      elements: dict
      sample: [{reason: "connect to mx.example.net[192.0.2.1]:25: Connection refused", recipients: 1532}]
    last_delivery:
      description: Time of the last delivery in the mail log (ISO 8601, UTC); null when none was found.
      type: str
    last_delivery_epoch:
      description: The same as seconds since the epoch.
      type: int
    last_delivery_age:
      description: Seconds since the last delivery.
      type: int
    mail_log:
      description: The log the last delivery was found in.
      type: str
    exposure:
      description: Network-facing unit -> C(systemd-analyze security) score (null when unavailable).
      type: dict
      sample: {postfix-edge-smtp-inet.service: 2.1}
    exposure_max:
      description: The highest of those scores (the worst); null when none.
      type: float
    health:
      description:
        - V(down) (not running), V(degraded) (failed units, units restarting after abnormal exits, sockets not
          listening, queue unreadable) or V(ok).
      type: str
    severity:
      description: 2 for V(down), 1 for V(degraded), 0 for V(ok); sort by it to list problems first.
      type: int
    problems:
      description: What makes the instance down or degraded, in words.
      type: list
      elements: str
metrics_path:
  description: The metrics file written (or, in check mode, that would be); null without O(metrics_path).
  returned: always
  type: str
"""

from typing import Any  # noqa: E402 - imports follow the documentation (ansible-test validate-modules)

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.mailfleet.postfix.plugins.module_utils import _host  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils import _status_cli as status  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils import _status_observe as observe  # noqa: E402


def run(module: AnsibleModule) -> dict[str, Any]:
    p = module.params
    opts = observe.Options(names=tuple(p["instances"]), queue_details=p["queue_details"], reasons=p["reasons"],
                           mail_logs=tuple(p["mail_logs"]), exposure=p["exposure"])
    try:
        reports, duration = status.collect(_host.ModuleRunner(module), _host.stream_lines, opts)
    except (observe.InstanceError, _host.CommandError) as exc:
        module.fail_json(msg=str(exc))
    result: dict[str, Any] = {"changed": False, "instances": reports, "metrics_path": None}
    if p["metrics_path"]:
        spec = status.metrics_file(p["metrics_path"], reports, duration)
        writer = status.metrics_writer(module.check_mode)
        try:
            result["changed"] = writer.ensure(spec)
        except (_host.HostError, OSError) as exc:
            module.fail_json(msg=f"cannot write {spec.path}: {exc}", instances=reports)
        result["metrics_path"] = spec.path
        if module._diff:
            result["diff"] = writer.diffs
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "instances": {"type": "list", "elements": "str", "default": []},
            "queue_details": {"type": "bool", "default": True},
            "reasons": {"type": "int", "default": 5},
            "mail_logs": {"type": "list", "elements": "path", "default": []},
            "exposure": {"type": "bool", "default": True},
            "metrics_path": {"type": "path"},
        },
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
