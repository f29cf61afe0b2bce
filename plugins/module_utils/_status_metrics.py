# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The instance_info figures in the Prometheus text exposition format (version 0.0.4), for
node_exporter's textfile collector.

Private to the mailfleet.postfix collection; the API may change without notice.

Labels name the Postfix instance, never the host: the scrape adds the host (``instance``,
``job``), so the label is ``postfix_instance`` (a label ``instance`` in the file would clash with
the target's and be renamed ``exported_instance``). Every metric family has HELP and TYPE; a
family without samples is left out. Deferral reasons are labels, bounded by the module's
``reasons`` (the most frequent few) and shortened (``_postfix_queue.REASON_MAX``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

from ._host import FileSpec

PREFIX = "mailfleet_postfix_"
DEFAULT_PATH = "/var/lib/prometheus/node-exporter/mailfleet_postfix.prom"

# name, help, the value of one report (None: no sample)
_FAMILIES: tuple[tuple[str, str], ...] = (
    ("up", "Whether the instance runs (master(8) or its master-less units)."),
    ("enabled", "Whether the instance starts at boot."),
    ("failed_units", "Units of the instance in the failed state."),
    ("queue_messages", "Messages in each queue of the instance."),
    ("oldest_deferred_age_seconds", "Age of the oldest message in the deferred queue."),
    ("deferred_reason_recipients", "Deferred recipients per deferral reason (the most frequent reasons)."),
    ("last_delivery_timestamp_seconds", "Time of the last delivery found in the mail log."),
    ("unit_exposure", "Exposure score of a network-facing unit by systemd-analyze security (0 best, 10 worst)."),
    ("info", "The instance's orchestration mode and health as labels; always 1."),
)


def escape(value: str) -> str:
    """A label value: backslash, double quote and line feed escaped, as the format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _labels(labels: Sequence[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels) + "}"


def samples(report: Mapping[str, Any]) -> dict[str, list[tuple[list[tuple[str, str]], float]]]:
    """Metric name (without prefix) -> (labels, value) of one instance."""
    own = [("postfix_instance", report["short_name"])]
    out: dict[str, list[tuple[list[tuple[str, str]], float]]] = {name: [] for name, _help in _FAMILIES}
    out["up"].append((own, int(bool(report["running"]))))
    if report.get("enabled") is not None:
        out["enabled"].append((own, int(bool(report["enabled"]))))
    out["failed_units"].append((own, len(report["failed_units"])))
    for queue, count in report["queues"].items():
        out["queue_messages"].append((own + [("queue", queue)], count))
    if report.get("oldest_deferred_age") is not None:
        out["oldest_deferred_age_seconds"].append((own, report["oldest_deferred_age"]))
    for item in report.get("deferral_reasons") or ():
        out["deferred_reason_recipients"].append((own + [("reason", item["reason"])], item["recipients"]))
    last = report.get("last_delivery_epoch")
    if last is not None:
        out["last_delivery_timestamp_seconds"].append((own, last))
    for unit, score in sorted((report.get("exposure") or {}).items()):
        if score is not None:
            out["unit_exposure"].append((own + [("unit", unit)], score))
    out["info"].append((own + [("mode", report["mode"]), ("health", report["health"])], 1))
    return out


def render(reports: Sequence[Mapping[str, Any]], *, duration: Optional[float] = None) -> str:
    """The exposition text of every instance's report, one family after another."""
    families: dict[str, list[tuple[list[tuple[str, str]], float]]] = {name: [] for name, _help in _FAMILIES}
    for report in reports:
        for name, rows in samples(report).items():
            families[name] += rows
    lines = []
    for name, help_text in _FAMILIES:
        if not families[name]:
            continue
        lines += [f"# HELP {PREFIX}{name} {help_text}", f"# TYPE {PREFIX}{name} gauge"]
        lines += [f"{PREFIX}{name}{_labels(labels)} {_number(value)}" for labels, value in families[name]]
    if duration is not None:
        lines += [f"# HELP {PREFIX}collect_duration_seconds Time instance_info took to read every instance.",
                  f"# TYPE {PREFIX}collect_duration_seconds gauge",
                  f"{PREFIX}collect_duration_seconds {_number(round(duration, 3))}"]
    return "\n".join(lines) + "\n"


def file_spec(path: str, text: str) -> FileSpec:
    """The metrics file: world-readable (node_exporter runs as its own user), root's, also when
    the directory's owner put a file of their own there first."""
    return FileSpec(path, text, mode=0o644, owner=0, group=0)
