"""The library installed on hosts: one package, whole, whichever module installs it."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _host, _host_package, _masterless_generator


def test_the_package_is_every_module_the_host_side_runs(tmp_path: Path) -> None:
    files = {Path(s.path).name: s for s in _host_package.package_files(str(tmp_path))}
    assert set(files) == {"__init__.py", *(f"{name}.py" for name in _host_package.modules())}
    for name, module in _host_package.modules().items():
        assert files[f"{name}.py"].content == Path(module.__file__ or "").read_text()
    # The generator's own import list is part of it.
    assert set(_host_package.modules()) >= set(_host_package.modules()["_masterless_generator"].LIBRARY)


def test_every_module_the_package_imports_is_in_it() -> None:
    """A module missing from the package fails only on a host, at the first import (the status timer's)."""
    package = _host_package.modules()
    for name, module in package.items():
        for node in ast.walk(ast.parse(Path(module.__file__ or "").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported = [node.module] if node.module else [a.name for a in node.names]
                assert set(imported) <= set(package), f"{name} imports {imported}"
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                root = (node.module or "") if isinstance(node, ast.ImportFrom) else node.names[0].name
                assert not root.startswith("ansible"), f"{name} imports {root}: not on a managed host"


# The release before the library's files were named by layer: what a running holder may still import.
PREVIOUS = "f854145"
PREVIOUS_LIBRARY = ("_mastercf", "_semantics", "_units", "_sandbox", "_bridge", "_generator")
REPO = Path(__file__).resolve().parents[4]


def _previous_source(name: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO), "show", f"{PREVIOUS}:plugins/module_utils/{name}.py"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"no git history with {PREVIOUS} here: {done.stderr.strip()}")
    return done.stdout


def test_a_holder_started_before_an_upgrade_still_reads_its_unit_set(tmp_path: Path) -> None:
    """An upgrade writes the package of this release; a holder of the previous one keeps running and
    imports its generator in a child at the next registration: its modules must still be there."""
    package = tmp_path / _host_package.PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in PREVIOUS_LIBRARY:
        (package / f"{name}.py").write_text(_previous_source(name))
    units_set = tmp_path / "units.set"
    # Written by this release's generator: the previous holder reads its format too.
    _masterless_generator.save_set(str(units_set), {"postfix-default-smtp-inet@.service": "[Service]\n"})
    holder = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c",
         f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
         "from mailfleet_postfix import _bridge\n"
         "print('started', flush=True)\n"
         "sys.stdin.readline()\n"
         "try:\n"
         f"    _bridge._in_child(_bridge._SetReader({str(units_set)!r}))\n"
         "    print('ok')\n"
         "except _bridge.BridgeError as exc:\n"
         "    print('refused:', exc)\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "started"
    _host.Writer().ensure_all(_host_package.package_files(str(tmp_path)))  # the upgrade
    holder.stdin.write("go\n")
    holder.stdin.flush()
    out = holder.stdout.read()
    holder.wait(60)
    assert out.strip() == "ok", out
    assert {f"{n}.py" for n in PREVIOUS_LIBRARY} <= {p.name for p in package.iterdir()}


def test_compiled_bytecode_is_checked_against_the_source(tmp_path: Path) -> None:
    _host.Writer().ensure_all(_host_package.package_files(str(tmp_path)))
    old = os.umask(0)  # a permissive umask must not leave writable bytecode
    try:
        _host_package.compile_package(_host.local_run, sys.executable, str(tmp_path))
    finally:
        os.umask(old)
    cached = list((tmp_path / _host_package.PACKAGE / "__pycache__").glob("_host.*.pyc"))
    assert cached
    flags = int.from_bytes(cached[0].read_bytes()[4:8], "little")
    assert flags == 0b11  # hash-based, checked
    for path in (tmp_path / _host_package.PACKAGE, cached[0].parent, cached[0]):
        assert not path.stat().st_mode & 0o022, path  # code run as root: writable by root only
    # The installed package works on its own.
    script = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import mailfleet_postfix._masterless_generator"
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_failed_compile_names_the_interpreter(tmp_path: Path) -> None:
    with pytest.raises(_host.CommandError, match="/nonexistent/python3 -m compileall"):
        _host_package.compile_package(_host.local_run, "/nonexistent/python3", str(tmp_path))
