"""The metrics timer's command: the same figures as instance_info, written for node_exporter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _host, _host_package, _status_cli
from ansible_collections.mailfleet.postfix.tests.unit.plugins.module_utils.status_host import (
    Host,
    install,
    two_instances,
)


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    return install(tmp_path, monkeypatch)


def test_writes_the_metrics_of_every_instance(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    two_instances(host)
    path = host.tmp / "textfile" / "mailfleet_postfix.prom"
    assert _status_cli.main(["--metrics", str(path), "--mail-log", str(host.tmp / "mail.log")]) == 0
    text = path.read_text()
    assert 'mailfleet_postfix_queue_messages{postfix_instance="edge",queue="deferred"} 3' in text
    assert 'mailfleet_postfix_up{postfix_instance="default"} 1' in text
    assert "mailfleet_postfix_deferred_reason_recipients{" in text  # postqueue -j was read
    assert os.stat(path).st_mode & 0o777 == 0o644 and os.listdir(path.parent) == ["mailfleet_postfix.prom"]
    assert capsys.readouterr().out.startswith("2 instances, 0 down;")
    if shutil.which("promtool"):
        done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_counts_only_and_no_exposure_as_the_timer_runs_it(host: Host) -> None:
    two_instances(host)
    path = host.tmp / "m.prom"
    assert _status_cli.main(["--metrics", str(path), "--no-queue-details", "--no-exposure"]) == 0
    assert not host.streamed and not any(c[0].endswith("systemd-analyze") for c in host.calls)
    text = path.read_text()
    assert 'queue="deferred"} 3' in text and "unit_exposure{" not in text and "reason_recipients{" not in text


def test_a_failure_keeps_the_previous_file_and_says_why(host: Host, capsys: pytest.CaptureFixture[str]) -> None:
    path = host.tmp / "m.prom"
    path.write_text("old\n")
    assert _status_cli.main(["--metrics", str(path)]) == 1  # no main.cf: no Postfix
    assert path.read_text() == "old\n" and "is Postfix installed?" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["--metrics"], ["--metrics", "relative.prom"], ["--metrics", "/x.prom", "-v"]])
def test_bad_arguments_print_the_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _status_cli.main(argv) == 2
    assert capsys.readouterr().err.startswith("usage: status --metrics PATH")


def test_a_link_at_the_metrics_path_is_not_followed(host: Host, tmp_path: Path) -> None:
    two_instances(host)
    (tmp_path / "target").write_text("keep\n")
    (tmp_path / "m.prom").symlink_to(tmp_path / "target")
    assert _status_cli.main(["--metrics", str(tmp_path / "m.prom")]) == 1
    assert (tmp_path / "target").read_text() == "keep\n"


def test_the_launcher_runs_from_the_installed_package_alone(tmp_path: Path) -> None:
    """-I -S as the timer runs it: the package needs nothing outside the standard library."""
    _host.Writer().ensure_all(_host_package.package_files(str(tmp_path)))
    launcher = tmp_path / _status_cli.LAUNCHER_NAME
    launcher.write_text(_status_cli.LAUNCHER.format(python=sys.executable, libexec=str(tmp_path)))
    done = subprocess.run([sys.executable, "-I", "-S", str(launcher), "--metrics"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 2 and done.stderr.startswith("usage:"), done.stderr
