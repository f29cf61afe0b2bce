# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading the status of every Postfix instance on a host (the instance_info module's observation).

Private to the mailfleet.postfix collection; the API may change without notice.

Read-only: postconf, systemctl show and list-units, systemd-analyze security, postqueue -j, the
queue directories, the mail log. The judgement is ``_status_report``'s.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Callable, Iterable, Optional, Sequence

from . import _host, _masterless_generator
from ._classic_unit import ClassicInstance, managed_units
from ._host import CommandError, Runner
from ._masterless_bridge import own_unit
from ._masterless_host import current_units, master_pid
from ._postfix_instances import InstanceError, Postfix, Primary
from ._postfix_log import DEFAULT_LOGS, find_last_delivery
from ._postfix_mastercf import MasterCfError
from ._postfix_queue import QueueSummary, count_directories, merged, summarize
from ._status_report import InstanceSeen, exposed_units, instance_of, listeners, named_units

# main.cf values the status needs (postconf -x: as the daemons see them).
PARAMS = ("multi_instance_name", "queue_directory", "data_directory", "command_directory", "daemon_directory",
          "syslog_name", "maillog_file", "inet_interfaces", "inet_protocols", "master_service_disable",
          "compatibility_level", "known_tcp_ports", "default_process_limit")
STATE_PROPS = "Id,LoadState,ActiveState,SubState,Result,UnitFileState,NRestarts"
_EXPOSURE = re.compile(r"Overall exposure level for (\S+): ([0-9.]+)")

Stream = Callable[[Sequence[str]], Iterable[str]]


class Options(_host.Record):
    _fields = ("names", "queue_details", "reasons", "mail_logs", "exposure")
    names: tuple[str, ...] = ()  # multi_instance_name values to report; empty: all
    queue_details: bool = True
    reasons: int = 5
    mail_logs: tuple[str, ...] = ()  # empty: maillog_file, then DEFAULT_LOGS
    exposure: bool = True


def instance_dirs(postfix: Postfix) -> list[str]:
    """The primary's config directory, then multi_instance_directories that have a main.cf."""
    primary = Primary.read(postfix)
    return [primary.config_directory] + [d for d in primary.directories if os.path.isfile(os.path.join(d, "main.cf"))]


def exposure_scores(run: Runner, units: Sequence[str]) -> dict[str, Optional[float]]:
    """systemd-analyze security of loaded units (drop-ins included), one call; None per unit without a score."""
    binary = shutil.which("systemd-analyze", path=os.pathsep.join([os.environ.get("PATH", ""), *_host.SBIN_DIRS]))
    if not units or not binary or not _host.booted():
        return dict.fromkeys(units)
    _code, out, err = run([binary, "security", "--no-pager", "--", *units])
    found = {m.group(1): float(m.group(2)) for m in _EXPOSURE.finditer(out + err)}
    return {u: found.get(u) for u in units}


def queue_of(stream: Stream, postqueue: str, params: dict[str, str], config_dir: str, opts: Options
             ) -> tuple[Optional[QueueSummary], Optional[str]]:
    """Counts from the queue directories (root), details from postqueue -j; the error, if any."""
    try:
        counts: Optional[dict[str, int]] = count_directories(params["queue_directory"])
    except OSError:
        counts = None  # not root: postqueue's counts instead
    details, error = None, None
    if opts.queue_details or counts is None:
        try:
            details = summarize(stream([postqueue, "-c", config_dir, "-j"]), top=opts.reasons)
        except CommandError as exc:
            error = str(exc)
    if counts is None and details is None:
        return None, error
    return merged(counts, details), error


def observe(run: Runner, stream: Stream, opts: Options, now: float,
            postfix: Optional[Postfix] = None) -> list[InstanceSeen]:
    """Every instance's InstanceSeen (those named in ``opts.names`` when given)."""
    postfix = postfix or Postfix(run=run)
    booted = _host.booted()
    rows = _host.list_units(run, "postfix*") if booted else []
    seen = []
    for config_dir in instance_dirs(postfix):
        params = postfix.params(config_dir, PARAMS)
        name = params["multi_instance_name"].strip() or "-"
        if opts.names and name not in opts.names:
            continue
        inst = instance_of(name, params)
        classic = ClassicInstance(name=name, config_directory=config_dir)
        conf = os.path.join(_masterless_generator.CONF_DIR, f"{inst.short_name}.conf")
        masterless = os.path.exists(conf)
        state = os.path.join(_masterless_generator.STATE_DIR, inst.short_name, "units.set")
        stored = tuple(current_units(conf, state)) if masterless else ()
        # Only units that run master(8): an active jail .path unit must not count as a running master.
        own_units = managed_units(classic)
        masters = (own_units[0], *_masterless_generator.master_units(name, config_dir))
        wanted = named_units(name, params, masterless, stored, masters) + ([] if masterless else own_units[1:])
        states = _host.unit_states(run, wanted, STATE_PROPS) if booted else {}
        own = [r for r in rows if own_unit(inst.prefix, r[0]) and r[0] not in states] if masterless else []
        # template instances that are not idle: their restart counts tell a crash loop
        states.update(_host.unit_states(run, [r[0] for r in own if r[2] not in ("inactive", "failed")], STATE_PROPS))
        try:
            master_text: Optional[str] = _host.read_text(os.path.join(config_dir, "master.cf"))
        except OSError:
            master_text = None
        queue, queue_error = queue_of(stream, os.path.join(params["command_directory"], "postqueue"), params,
                                      config_dir, opts)
        logs = opts.mail_logs or tuple(p for p in (params["maillog_file"].strip(), *DEFAULT_LOGS) if p)
        when, log = find_last_delivery(logs, params["syslog_name"].strip() or "postfix", now)
        item = InstanceSeen(
            name=name, config_directory=config_dir, queue_directory=params["queue_directory"], params=params,
            master_cf=master_text, masterless=masterless, stored_units=stored, states=states,
            rows=[r for r in own if r[0] not in states],
            master_units=masters, master_pid=master_pid(params["queue_directory"]), queue=queue,
            queue_error=queue_error, last_delivery=when, log=log, exposure={})
        if opts.exposure and master_text is not None:
            try:
                facing = listeners(master_text, params, origin=f"{config_dir}/master.cf")
            except MasterCfError:  # the report names the error
                facing = []
            item.exposure = exposure_scores(run, [u for u in exposed_units(item, facing)
                                                  if states.get(u, {}).get("LoadState") != "not-found"])
        seen.append(item)
    return seen


__all__ = ["InstanceError", "Options", "observe"]
