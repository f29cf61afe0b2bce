# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lab-only callback: record failures, the recap and set_stats data as JSON for lab/summary.py."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: mailfleet_lab
type: notification
short_description: write a JSON record of a playbook run for lab/summary.py
description:
  - Writes failed and unreachable tasks, the per-host recap and custom stats (set_stats) to the
    file named by E(MAILFLEET_LAB_RESULT).
requirements:
  - enable in callbacks_enabled
"""


def _split(result: Any) -> tuple[str, str, dict[str, Any]]:
    """Return host name, task name and result dict (attribute names differ across ansible-core versions)."""
    host = getattr(result, "host", None) or result._host  # pylint: disable=protected-access
    task = getattr(result, "task", None) or result._task  # pylint: disable=protected-access
    data = getattr(result, "result", None)
    if not isinstance(data, dict):
        data = dict(result._result)  # pylint: disable=protected-access
    return host.get_name(), task.get_name(), data


def _message(data: dict[str, Any]) -> str:
    msg = data.get("msg") or data.get("stderr") or data.get("reason") or ""
    if not msg and data.get("results"):
        msg = "; ".join(str(item.get("msg", "")) for item in data["results"] if item.get("failed"))
    return str(msg)[:2000]


class CallbackModule(CallbackBase):
    """Collect what the lab summary needs; stdout stays with the default callback."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "mailfleet_lab"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._path = os.environ.get("MAILFLEET_LAB_RESULT", "")
        self._start = time.monotonic()
        self._failures: list[dict[str, Any]] = []
        self._playbook = ""

    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._playbook = os.path.basename(playbook._file_name)  # pylint: disable=protected-access

    def _record(self, result: Any, *, unreachable: bool) -> None:
        host, task, data = _split(result)
        self._failures.append({"host": host, "task": task, "unreachable": unreachable, "msg": _message(data)})

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        if not ignore_errors:
            self._record(result, unreachable=False)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._record(result, unreachable=True)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        if not self._path:
            return
        record = {
            "playbook": self._playbook,
            "seconds": round(time.monotonic() - self._start, 1),
            "hosts": {host: stats.summarize(host) for host in sorted(stats.processed)},
            "failures": self._failures,
            # set_stats without per_host lands under "_run"
            "stats": (stats.custom or {}).get("_run", {}),
        }
        tmp = self._path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2, sort_keys=True, default=str)
        os.replace(tmp, self._path)
