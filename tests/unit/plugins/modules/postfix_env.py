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
from typing import Any, Iterator
from unittest.mock import patch

import pytest
from ansible.module_utils.common import warnings as _warnings

from ansible_collections.mailfleet.postfix.tests import fixture_files

try:  # ansible-core >= 2.19
    from ansible.module_utils import _internal
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # 2.17 and 2.18 read the arguments from basic._ANSIBLE_ARGS
    from ansible.module_utils import basic

    _internal = None

    @contextlib.contextmanager
    def patch_module_args(args: dict[str, Any]) -> Iterator[None]:
        with patch.object(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()):
            yield

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = ROOT / "tests" / "unit" / "fixtures"
SBIN = "/usr/sbin:/sbin:/usr/local/sbin:" + os.environ.get("PATH", "")
POSTFIX_INSTALLED = shutil.which("postconf", path=SBIN) is not None
IS_ROOT = os.geteuid() == 0

needs_postfix = pytest.mark.skipif(not POSTFIX_INSTALLED, reason="Postfix is not installed")
needs_postfix_check = pytest.mark.skipif(not (POSTFIX_INSTALLED and IS_ROOT), reason="postfix check needs Postfix and root")


# Pristine copies of the package's prototypes (Debian installs them here and copies them into
# /etc/postfix at configure time). Tests never read /etc/postfix: make test hides it.
PACKAGE_SHARE = Path("/usr/share/postfix")
PROTOTYPES = {"main.cf.proto": "main.cf.dist", "master.cf.proto": "master.cf.dist"}

# The directories of postfix-files that post-install creates or checks for `postfix check`,
# as (path, owner, group, mode, flags); the package's own list also names every program.
_TREE = (
    ("$config_directory", "root", "-", "755", "u"),
    ("$data_directory", "$mail_owner", "-", "700", "uc"),
    ("$queue_directory", "root", "-", "755", "uc"),
    *((f"$queue_directory/{sub}", "$mail_owner", "-", "700", "ucr")
      for sub in ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "saved", "trace")),
    ("$queue_directory/private", "$mail_owner", "-", "700", "uc"),
    ("$queue_directory/maildrop", "$mail_owner", "$setgid_group", "730", "uc"),
    ("$queue_directory/public", "$mail_owner", "$setgid_group", "710", "uc"),
    ("$queue_directory/pid", "root", "-", "755", "uc"),
)


def make_meta_directory(base: Path) -> Path:
    """A meta_directory of our own: the package's prototypes, postfix-files for the queue tree."""
    meta = base / "meta"
    meta.mkdir(parents=True)
    for proto, dist in PROTOTYPES.items():
        shutil.copyfile(PACKAGE_SHARE / dist, meta / proto)
    (meta / "postfix-files").write_text("".join(":".join((path, "d", *rest)) + "\n" for path, *rest in _TREE))
    (meta / "dynamicmaps.cf").write_text("# dict-type\tso-name (pathname)\tdict-function\tmkmap-function\n")
    for sub in ("postfix-files.d", "dynamicmaps.cf.d"):
        (meta / sub).mkdir()
    return meta


def instance_paths(*, queue: Path, data: Path, meta: Path) -> str:
    """main.cf lines that keep an instance inside base/ (after whatever the fixture says)."""
    return f"queue_directory = {queue}\ndata_directory = {data}\nmeta_directory = {meta}\n"


@dataclass
class ConfigDir:
    """A Postfix config directory of fixtures: main.cf/master.cf, its own queue and meta_directory."""

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
    path.mkdir()
    queue, data = base / "queue", base / "data"
    queue.mkdir()
    meta = make_meta_directory(base)
    (path / "master.cf").write_bytes(fixture_files.read(FIXTURES / "master.cf" / master))
    text = fixture_files.read(FIXTURES / "main.cf" / main).decode("utf-8", "surrogateescape")
    (path / "main.cf").write_text(text + instance_paths(queue=queue, data=data, meta=meta))
    old = 1_600_000_000  # an mtime in the past, so a rewrite is always visible
    for name in ("main.cf", "master.cf"):
        os.utime(path / name, (old, old))
    return ConfigDir(path, queue)


def make_primary(root: Path) -> Path:
    """A throwaway primary instance laid out like a host: root/etc/postfix, root/spool/postfix, root/lib/postfix."""
    etc = root / "etc" / "postfix"
    etc.mkdir(parents=True)
    queue, data = root / "spool" / "postfix", root / "lib" / "postfix"
    for path in (queue, data):
        path.mkdir(parents=True)
    meta = make_meta_directory(root)
    shutil.copyfile(FIXTURES / "master.cf" / "stock.cf", etc / "master.cf")
    text = (FIXTURES / "main.cf" / "stock.cf").read_text()
    (etc / "main.cf").write_text(text + instance_paths(queue=queue, data=data, meta=meta))
    return etc


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
        # 2.19: outside a controller, warn() queues warnings for the result instead of printing them.
        patch.object(_internal, "is_controller", False) if _internal else contextlib.nullcontext(),
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
