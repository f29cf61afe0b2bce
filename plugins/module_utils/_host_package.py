# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The library installed on hosts: one package for the generator, the bridge, the jail sync and the
status timer.

Private to the mailfleet.postfix collection; the API may change without notice.

Both orchestration modules install it, ``systemd_units`` for the master-less side and
``instance_unit`` for the jail sync, and each writes the whole package from its own payload (the
module_utils sources it imported, never a second copy). So the files on a host always come from
one release: a package half from an older one could make the generator fail at the next
daemon-reload.
"""

from __future__ import annotations

import os
import posixpath
from types import ModuleType

from ._host import CommandError, FileSpec, Runner

PACKAGE = "mailfleet_postfix"


def modules() -> dict[str, ModuleType]:
    """What the generator, the bridge, the jail sync and the status timer import on a host, by file
    name. Imported here, not at the top: the status modules import the orchestration modules, which
    import this one."""
    from . import (
        _classic_chroot,
        _classic_jail_sync,
        _classic_unit,
        _host,
        _host_config,
        _host_package,
        _masterless_bridge,
        _masterless_generator,
        _masterless_host,
        _masterless_plan,
        _masterless_units,
        _postfix_instances,
        _postfix_log,
        _postfix_maincf,
        _postfix_mastercf,
        _postfix_queue,
        _postfix_semantics,
        _status_cli,
        _status_metrics,
        _status_observe,
        _status_report,
        _systemd_sandbox,
    )

    return {module.__name__.rpartition(".")[2]: module for module in (
        _host, _postfix_mastercf, _postfix_semantics, _masterless_units, _systemd_sandbox, _masterless_bridge,
        _masterless_generator, _classic_jail_sync, _host_config, _postfix_maincf, _postfix_instances, _postfix_queue,
        _postfix_log, _classic_chroot, _classic_unit, _masterless_plan, _masterless_host, _host_package,
        _status_report, _status_observe, _status_metrics, _status_cli)}


def module_source(module: ModuleType) -> str:
    """The source of an imported module, also from Ansible's zipped payload."""
    loader = getattr(module, "__loader__", None)
    source = loader.get_source(module.__name__) if loader is not None and hasattr(loader, "get_source") else None
    if source is None:
        with open(module.__file__ or "", encoding="utf-8") as handle:
            source = handle.read()
    return source


def package_dir(libexec: str) -> str:
    return posixpath.join(libexec, PACKAGE)


def package_files(libexec: str) -> list[FileSpec]:
    """Every file of the package, the same whichever module installs it.

    Modules of an older release stay: a holder started before the upgrade keeps the code it
    loaded and imports the rest of that release later (it reads the unit set in a child that
    imports its generator), until the instance restarts."""
    package = package_dir(libexec)
    return [FileSpec(posixpath.join(package, "__init__.py"), "")] + [
        FileSpec(posixpath.join(package, f"{name}.py"), module_source(module)) for name, module in modules().items()]


def compile_package(run: Runner, python: str, libexec: str) -> None:
    """Bytecode for the interpreter the units run: the holder, the workers' bridge and the jail sync
    run sandboxed (/usr read-only) and would otherwise compile the library at every start."""
    package = package_dir(libexec)
    # checked-hash: the bytecode is used only while it matches the source's content (not mtime and size).
    code, out, err = run([python, "-I", "-S", "-m", "compileall", "-q", "-l", "-f", "--invalidation-mode", "checked-hash",
                          package])
    if code != 0:
        raise CommandError(f"{python} -m compileall {package} failed: {(err or out).strip()}")
    # Bytecode is code run as root: nobody else may write it, whatever umask compileall ran under.
    cache = posixpath.join(package, "__pycache__")
    for path in (package, cache):
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o755)
    for name in os.listdir(cache) if os.path.isdir(cache) else []:
        path = posixpath.join(cache, name)
        if os.path.isfile(path) and not os.path.islink(path):
            os.chmod(path, 0o644)
