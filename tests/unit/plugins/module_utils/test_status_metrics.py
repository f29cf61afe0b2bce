"""The Prometheus text exposition of instance_info's figures."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _status_metrics as metrics


def report(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "postfix-edge", "short_name": "edge", "running": True, "enabled": True, "failed_units": [],
        "queues": {"maildrop": 0, "incoming": 0, "active": 2, "deferred": 1532, "hold": 1},
        "oldest_deferred_age": 7200, "last_delivery_epoch": 1796590000, "mode": "masterless", "health": "ok",
        "deferral_reasons": [{"reason": 'host x said: "451 try later"\\ \n', "recipients": 1532}],
        "exposure": {"postfix-edge-smtp-inet.service": 2.1, "postfix-edge-submission-inet@1.service": None}}
    base.update(kw)
    return base


def test_families_have_help_and_type_and_labels_name_the_instance() -> None:
    text = metrics.render([report(), report(short_name="default", name="-", running=False, enabled=None,
                                            oldest_deferred_age=None, deferral_reasons=[], exposure={},
                                            last_delivery_epoch=None)], duration=0.1234)
    lines = text.splitlines()
    assert text.endswith("\n")
    assert 'mailfleet_postfix_up{postfix_instance="edge"} 1' in lines
    assert 'mailfleet_postfix_up{postfix_instance="default"} 0' in lines
    assert 'mailfleet_postfix_queue_messages{postfix_instance="edge",queue="deferred"} 1532' in lines
    assert 'mailfleet_postfix_unit_exposure{postfix_instance="edge",unit="postfix-edge-smtp-inet.service"} 2.1' in lines
    assert not any("submission-inet@1" in line for line in lines)  # no score, no sample
    assert 'mailfleet_postfix_info{postfix_instance="edge",mode="masterless",health="ok"} 1' in lines
    assert "mailfleet_postfix_collect_duration_seconds 0.123" in lines
    assert sum(1 for line in lines if line.startswith("mailfleet_postfix_enabled")) == 1  # unknown: left out
    assert not any("host" in line.split("{")[0] or 'instance="' in line.replace("postfix_instance", "")
                   for line in lines if not line.startswith("#"))
    names = {line.split("{")[0].split(" ")[0] for line in lines if not line.startswith("#")}
    for name in names:  # every family announced once, before its samples
        assert lines.count(f"# TYPE {name} gauge") == 1
        assert sum(1 for line in lines if line.startswith(f"# HELP {name} ")) == 1


def test_label_values_are_escaped() -> None:
    assert metrics.escape('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    text = metrics.render([report()])
    assert 'reason="host x said: \\"451 try later\\"\\\\ \\n"} 1532' in text


def test_a_family_without_samples_is_left_out() -> None:
    text = metrics.render([report(oldest_deferred_age=None, deferral_reasons=[], exposure={})])
    assert "oldest_deferred_age_seconds" not in text and "deferred_reason" not in text and "exposure" not in text


def test_file_is_world_readable() -> None:
    spec = metrics.file_spec("/x/m.prom", "a 1\n")
    assert spec.mode == 0o644 and spec.content == "a 1\n"


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is missing: apt-get install prometheus (lab/setup-host.sh installs it)")
def test_promtool_accepts_the_file() -> None:
    text = metrics.render([report(), report(short_name="default", name="-", failed_units=["a.service"])], duration=1.5)
    done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
