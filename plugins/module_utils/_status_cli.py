# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Collecting the status of a host's instances, for the instance_info module and for the metrics
timer (``mailfleet-postfix-status``, installed by the metrics_timer module).

Private to the mailfleet.postfix collection; the API may change without notice.

Both run the same observation and judgement, so the timer's file holds what the module returns.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Mapping, Optional, Sequence

from . import _host
from . import _status_metrics as metrics
from . import _status_observe as observe
from ._status_report import ordered, report

LAUNCHER = """#!{python} -IS
# Installed by mailfleet.postfix (metrics_timer): Postfix status for node_exporter's textfile collector.
import sys
sys.path.insert(0, {libexec!r})
from mailfleet_postfix._status_cli import main
sys.exit(main(sys.argv[1:]))
"""
LAUNCHER_NAME = "status"


def collect(run: _host.Runner, stream: observe.Stream, opts: observe.Options) -> tuple[list[Mapping[str, Any]], float]:
    """Every instance's report, problems first, and the seconds it took."""
    started = time.monotonic()
    seen = observe.observe(run, stream, opts, time.time())
    now = time.time()
    return ordered([report(s, now) for s in seen]), time.monotonic() - started


def metrics_file(path: str, reports: Sequence[Mapping[str, Any]], duration: float) -> _host.FileSpec:
    return metrics.file_spec(os.path.normpath(path), metrics.render(reports, duration=duration))


def metrics_writer(check_mode: bool = False) -> _host.Writer:
    # Only a file replaces a file: never a directory, a link (it would write where it points) or a device.
    return _host.Writer(check_mode=check_mode, refuse_replacing=("directory", "link", "other"))


USAGE = ("usage: status --metrics PATH [--no-queue-details] [--no-exposure] [--instance NAME]... [--mail-log PATH]...\n"
         "Writes the Postfix status of every instance on this host in the Prometheus text format.\n")


def parse_args(argv: Sequence[str]) -> Optional[dict[str, Any]]:
    """The options, or None when argv is not valid (argparse is not used: it costs more to import
    than the rest, and the timer starts it every minute)."""
    args: dict[str, Any] = {"metrics": "", "queue_details": True, "exposure": True, "names": [], "mail_logs": []}
    flags = {"--no-queue-details": "queue_details", "--no-exposure": "exposure"}
    values = {"--metrics": "metrics", "--instance": "names", "--mail-log": "mail_logs"}
    items = list(argv)
    while items:
        item = items.pop(0)
        if item in flags:
            args[flags[item]] = False
        elif item in values and items:
            value = items.pop(0)
            if isinstance(args[values[item]], list):
                args[values[item]].append(value)
            else:
                args[values[item]] = value
        else:
            return None
    return args if os.path.isabs(args["metrics"]) else None


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args is None:
        sys.stderr.write(USAGE)
        return 2
    opts = observe.Options(names=tuple(args["names"]), queue_details=args["queue_details"], reasons=5,
                           mail_logs=tuple(args["mail_logs"]), exposure=args["exposure"])
    try:
        reports, duration = collect(_host.local_run, _host.stream_lines, opts)
        metrics_writer().ensure(metrics_file(args["metrics"], reports, duration))
    except (observe.InstanceError, _host.CommandError, _host.HostError, OSError, ValueError, OverflowError,
            MemoryError) as exc:
        # The old file stays: node_exporter's mtime metric shows it is no longer refreshed.
        sys.stderr.write(f"mailfleet-postfix status: {exc}\n")
        return 1
    down = [r["name"] for r in reports if r["health"] == "down"]
    sys.stdout.write(f"{len(reports)} instances, {len(down)} down{': ' + ', '.join(down) if down else ''}; "
                     f"{args['metrics']} written in {duration:.2f} s\n")
    return 0
