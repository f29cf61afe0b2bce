"""Run one small play against a role's task file through ansible-playbook, on localhost, in tmp_path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"

needs_playbook = pytest.mark.skipif(shutil.which(str(PLAYBOOK)) is None, reason="no ansible-playbook")


def run_play(tmp_path: Path, play: str, inventory: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The play's result and where it may write its report (``report`` in the play). In the inventory,
    LOCAL stands for the connection settings of the host the play runs on."""
    (tmp_path / "play.yml").write_text(play)
    local = f"ansible_connection=local ansible_python_interpreter={sys.executable}"
    (tmp_path / "inventory.ini").write_text(inventory.replace("LOCAL", local))
    report = tmp_path / "report.json"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "build" / "collections"), ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"), ANSIBLE_REMOTE_TEMP=str(tmp_path / "ansible-remote"),
               ANSIBLE_NOCOLOR="1")
    done = subprocess.run([str(PLAYBOOK), "-i", str(tmp_path / "inventory.ini"), str(tmp_path / "play.yml"),
                           "-e", f"report={report}"], capture_output=True, text=True, env=env, check=False, timeout=300)
    return done, report
