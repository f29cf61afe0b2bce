"""Test helpers: a throw-away Postfix config directory and an in-process module runner."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from ansible.module_utils import _internal
from ansible.module_utils.common import warnings as _warnings
from ansible.module_utils.testing import patch_module_args

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = ROOT / "tests" / "unit" / "fixtures"
SBIN = "/usr/sbin:/sbin:/usr/local/sbin:" + os.environ.get("PATH", "")
POSTFIX_INSTALLED = shutil.which("postconf", path=SBIN) is not None
IS_ROOT = os.geteuid() == 0

needs_postfix = pytest.mark.skipif(not POSTFIX_INSTALLED, reason="Postfix is not installed")
needs_postfix_check = pytest.mark.skipif(not (POSTFIX_INSTALLED and IS_ROOT), reason="postfix check needs Postfix and root")


@dataclass
class ConfigDir:
    """A copy of the system's Postfix config with our fixtures as main.cf/master.cf."""

    path: Path
    queue: Path  # what main.cf names as queue_directory; must stay untouched

    @property
    def master(self) -> Path:
        return self.path / "master.cf"

    @property
    def main(self) -> Path:
        return self.path / "main.cf"

    def snapshot(self) -> dict[str, tuple[bytes, int]]:
        """Bytes and mtime (ns) of both files."""
        return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (self.main, self.master)}


def make_config_dir(base: Path, *, master: str = "stock.cf", main: str = "stock.cf") -> ConfigDir:
    path = base / "postfix"
    if Path("/etc/postfix").is_dir():
        shutil.copytree("/etc/postfix", path, symlinks=True)
        # Postfix exempts only /etc/postfix/makedefs.out from "symlink leaves directory".
        (path / "makedefs.out").unlink(missing_ok=True)
    else:
        path.mkdir()
    queue, data = base / "queue", base / "data"
    queue.mkdir()
    shutil.copyfile(FIXTURES / "master.cf" / master, path / "master.cf")
    text = (FIXTURES / "main.cf" / main).read_text()
    (path / "main.cf").write_text(f"{text}queue_directory = {queue}\ndata_directory = {data}\n")
    old = 1_600_000_000  # an mtime in the past, so a rewrite is always visible
    for name in ("main.cf", "master.cf"):
        os.utime(path / name, (old, old))
    return ConfigDir(path, queue)


def run_module(name: str, args: dict[str, Any], *, tmp: Path, check: bool = False, diff: bool = False) -> dict[str, Any]:
    """Run plugins/modules/<name>.py in this process; return its result with 'failed' set on failure."""
    module = importlib.import_module(f"ansible_collections.mailfleet.postfix.plugins.modules.{name}")
    remote_tmp = tmp / "remote_tmp"
    remote_tmp.mkdir(exist_ok=True, mode=0o700)
    full = dict(args, _ansible_check_mode=check, _ansible_diff=diff, _ansible_remote_tmp=str(remote_tmp))
    out = io.StringIO()
    # Warnings live in process-wide state; start clean so earlier modules' warnings do not leak in.
    # Once controller code was imported (filter tests), warn() would print instead of returning them.
    _warnings._global_warnings.clear()
    _warnings._global_deprecations.clear()
    with (
        patch.object(_internal, "is_controller", False),
        patch_module_args(full),
        contextlib.redirect_stdout(out),
        pytest.raises(SystemExit) as exc,
    ):
        module.main()
    result: dict[str, Any] = json.loads(out.getvalue())
    assert bool(result.get("failed")) == (exc.value.code != 0), result
    return result


def warnings_of(result: dict[str, Any]) -> list[str]:
    """Warning texts; in-process results carry ansible-core 2.19's structured warnings."""
    return [w["event"]["msg"] if isinstance(w, dict) else str(w) for w in result.get("warnings", [])]


def have_postfix_user() -> bool:
    """The mapping looks mail_owner up in the passwd database (smtpd's pre-jail file access)."""
    import pwd

    try:
        pwd.getpwnam("postfix")
        return True
    except KeyError:
        return False
