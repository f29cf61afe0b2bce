"""The library installed on hosts: one package, whole, whichever module installs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils import _host, _host_package


def test_the_package_is_every_module_the_host_side_runs(tmp_path: Path) -> None:
    files = {Path(s.path).name: s for s in _host_package.package_files(str(tmp_path))}
    assert set(files) == {"__init__.py", *(f"{name}.py" for name in _host_package.MODULES)}
    for name, module in _host_package.MODULES.items():
        assert files[f"{name}.py"].content == Path(module.__file__ or "").read_text()
    # The generator's own import list is part of it.
    assert set(_host_package.MODULES) >= set(_host_package.MODULES["_masterless_generator"].LIBRARY)


def test_an_older_release_s_modules_are_removed(tmp_path: Path) -> None:
    package = tmp_path / _host_package.PACKAGE
    package.mkdir()
    for name in ("__init__.py", "_bridge.py", "_host.py", "notes.txt"):
        (package / name).write_text("# old\n")
    present = _host_package.present_files(str(tmp_path))
    specs = _host_package.package_files(str(tmp_path), present)
    assert [s.path for s in specs if s.absent] == [str(package / "_bridge.py")]
    _host.Writer().ensure_all(specs)
    assert sorted(p.name for p in package.iterdir()) == sorted(
        ["__init__.py", "notes.txt", *(f"{n}.py" for n in _host_package.MODULES)])
    assert _host_package.present_files(str(tmp_path / "none")) == []


def test_compiled_bytecode_is_checked_against_the_source(tmp_path: Path) -> None:
    _host.Writer().ensure_all(_host_package.package_files(str(tmp_path)))
    _host_package.compile_package(_host.local_run, sys.executable, str(tmp_path))
    cached = list((tmp_path / _host_package.PACKAGE / "__pycache__").glob("_host.*.pyc"))
    assert cached
    flags = int.from_bytes(cached[0].read_bytes()[4:8], "little")
    assert flags == 0b11  # hash-based, checked
    # The installed package works on its own.
    script = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import mailfleet_postfix._masterless_generator"
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_failed_compile_names_the_interpreter(tmp_path: Path) -> None:
    with pytest.raises(_host.CommandError, match="/nonexistent/python3 -m compileall"):
        _host_package.compile_package(_host.local_run, "/nonexistent/python3", str(tmp_path))
