# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Staged writes of a Postfix config directory: stage -> validate -> backup -> atomic replace.

Private to the mailfleet.postfix collection; the API may change without notice.

New main.cf/master.cf texts are first written into a copy of the config
directory and checked there by Postfix itself (``postconf -c STAGE -M`` and,
as root, ``postfix -c STAGE check``). Only when that passes are the real files
replaced, each by a rename in its own directory, so a refused change leaves the
target's bytes and mtime untouched.

``postfix check`` creates missing queue directories and repairs the queue
(post-install create-missing, postsuper), so the stage points queue_directory
and data_directory at scratch directories: the real queue is never touched.

Callers pass their ``AnsibleModule`` as ``host`` (only ``tmpdir`` and
``backup_local`` are used); without one, ``_host.LocalHost`` does the same with
the standard library. Files are written by the host layer's ``Writer``.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from ._host import FileSpec, Host, LocalHost, Tools, Writer, c_env, copy_owner, local_run, read_text, run_with_tty
from ._postfix_maincf import MainCf, MainCfError, Parameter
from ._postfix_mastercf import MasterCf, MasterCfError

CONFIG_FILES = ("main.cf", "master.cf")
# Postfix's own exemption in postfix-script check-warn, which a staged copy cannot match.
_MAKEDEFS_EXEMPT = "symlink leaves directory: /etc/postfix/./makedefs.out"


class FileOpsError(Exception):
    """A config directory that cannot be staged, checked or written."""

    def __init__(self, message: str, *, path: str, output: str = "") -> None:
        self.path = path
        self.output = output
        super().__init__(message)


class PostfixCheckError(FileOpsError):
    """Postfix refused the staged configuration; ``output`` holds its messages."""


@dataclass
class Outcome:
    """What write_config did (or, in check mode, would do)."""

    changed: list[str] = field(default_factory=list)  # paths whose content differs
    backups: dict[str, str] = field(default_factory=dict)  # path -> backup path
    checks: list[str] = field(default_factory=list)  # validations run or skipped, and why
    warnings: list[str] = field(default_factory=list)  # Postfix warnings that did not refuse the change


# --------------------------------------------------------------------------- programs


def check_programs(config_dir: str, text: str, keys: Sequence[str], *, path: str,
                   tools: Optional[Tools] = None) -> str:
    """Refuse changed entries whose command is no program in daemon_directory.

    Neither postconf nor postfix check looks at the command column: master(8) would fail at
    every spawn, and the master-less mapping refuses the entry after master.cf was written.
    keys are "service/type" strings; returns the check line for the module's result.
    """
    postconf = (tools or Tools.discover()).postconf
    if not postconf or not keys:
        return "daemon_directory programs: skipped (no postconf)" if keys else ""
    code, out, _err = local_run([postconf, "-c", config_dir, "-h", "daemon_directory"])
    daemon_directory = out.strip()
    if code != 0 or not daemon_directory:
        return "daemon_directory programs: skipped (postconf could not tell daemon_directory)"
    doc = MasterCf.parse(text, path=path)
    for key in keys:
        service, _sep, kind = key.rpartition("/")
        entry = doc.find(service, kind)
        if entry is None:
            continue
        command = entry.parsed.fields["command"]
        program = command if command.startswith("/") else os.path.join(daemon_directory, command)
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            raise MasterCfError(f"field 'command' is '{command}', but {program} is no program: master(8) could not "
                                "start this service", path=path, line=entry.first_line, field_name="command",
                                value=command)
    return f"daemon_directory programs: {daemon_directory} has the command of every changed entry"


# --------------------------------------------------------------------------- reading


def require_config_dir(config_dir: str) -> None:
    """Refuse anything that is not an existing Postfix config directory."""
    if not os.path.isdir(config_dir):
        what = "is not a directory" if os.path.exists(config_dir) else "does not exist"
        raise FileOpsError(f"config_dir {config_dir} {what}; expected a Postfix config directory", path=config_dir)
    missing = [name for name in CONFIG_FILES if not os.path.isfile(os.path.join(config_dir, name))]
    if missing:
        raise FileOpsError(
            f"config_dir {config_dir} is not a Postfix config directory: no {' or '.join(missing)} in it",
            path=config_dir,
        )


def read_config(config_dir: str, name: str) -> str:
    require_config_dir(config_dir)
    return read_text(os.path.join(config_dir, name))


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- writing


def write_config(
    host: Optional[Host],
    *,
    config_dir: str,
    contents: Mapping[str, str],
    backup: bool = False,
    check_mode: bool = False,
    tools: Optional[Tools] = None,
) -> Outcome:
    """Stage, validate and (unless check_mode) install new file contents.

    ``contents`` maps file names in config_dir (main.cf, master.cf) to their new
    text; files whose text is unchanged are left alone. Validation runs in check
    mode too, so check mode fails exactly where the real run would.
    """
    require_config_dir(config_dir)
    host = host or LocalHost()
    outcome = Outcome()
    pending = {name: text for name, text in contents.items() if _differs(config_dir, name, text)}
    if not pending:
        return outcome
    outcome.changed = [os.path.join(config_dir, name) for name in pending]
    validate_staged(config_dir, pending, tmpdir=host.tmpdir, tools=tools, outcome=outcome)
    if check_mode:
        return outcome
    writer = Writer(host=host)
    for name, text in pending.items():
        # A linked main.cf or master.cf is written where it points, as lineinfile does, so the link
        # stays; mode None: the file keeps its mode and owner, as an edit in place would.
        path = os.path.join(config_dir, name)
        dest = os.path.realpath(path)
        writer.ensure(FileSpec(dest, content=text, mode=None), backup=backup)
        if dest in writer.backups:
            outcome.backups[path] = writer.backups[dest]
    return outcome


def _differs(config_dir: str, name: str, text: str) -> bool:
    if name not in CONFIG_FILES:
        raise ValueError(f"unsupported config file {name!r}; expected one of {', '.join(CONFIG_FILES)}")
    with open(os.path.join(config_dir, name), "rb") as handle:
        return handle.read() != _encode(text)


# --------------------------------------------------------------------------- staging


def validate_staged(
    config_dir: str,
    contents: Mapping[str, str],
    *,
    tmpdir: Optional[str] = None,
    tools: Optional[Tools] = None,
    outcome: Optional[Outcome] = None,
) -> Outcome:
    """Let Postfix check config_dir with ``contents`` applied, on a private copy."""
    tools = tools or Tools.discover()
    outcome = outcome if outcome is not None else Outcome()
    if tools.postconf is None:
        outcome.checks.append("Postfix is not installed here: postconf -M and postfix check skipped")
        return outcome
    # The scratch queue sits in the system temp dir: socket paths under it (public/postlog,
    # which postfix uses when maillog_file is set) must stay below the 108-byte sun_path limit.
    root = tempfile.mkdtemp(prefix="mailfleet-stage-", dir=tmpdir)
    scratch = tempfile.mkdtemp(prefix="mailfleet-")
    try:
        stage = _Stage(root, scratch, config_dir)
        stage.populate()
        baseline = stage.run([tools.postconf, "-c", stage.config, "-M"])
        stage.write(contents)
        _postconf_check(stage, tools.postconf, baseline, outcome)
        _postfix_check(stage, tools.postfix, baseline, outcome)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return outcome


@dataclass
class _Run:
    rc: int
    lines: list[str]


class _Stage:
    """ROOT/config (copy of config_dir); SCRATCH/q and SCRATCH/d as queue and data directories."""

    def __init__(self, root: str, scratch: str, config_dir: str) -> None:
        self.source = config_dir.rstrip("/") or "/"
        self.config = os.path.join(root, "config")
        self.queue = os.path.join(scratch, "q")
        self.data = os.path.join(scratch, "d")

    def populate(self) -> None:
        os.mkdir(self.queue, 0o755)  # postfix chdirs there before post-install can create it
        shutil.copytree(self.source, self.config, symlinks=True, ignore=_special_files, copy_function=_copy_preserving)
        for here, dirs, _files in os.walk(self.source):
            for name in ["", *dirs]:
                src = os.path.join(here, name)
                if not os.path.islink(src):
                    copy_owner(src, os.path.join(self.config, os.path.relpath(src, self.source)))
        self.write({"main.cf": read_text(os.path.join(self.config, "main.cf"))})

    def write(self, contents: Mapping[str, str]) -> None:
        for name, text in contents.items():
            if name == "main.cf":
                text = self._redirect(text)
            path = os.path.join(self.config, name)
            with open(path, "wb") as handle:
                handle.write(_encode(text))
            # Postfix re-reads a main.cf younger than 2 s until it looks settled (dict_load_file).
            past = time.time() - 60
            os.utime(path, (past, past))

    def _redirect(self, text: str) -> str:
        """Point queue_directory and data_directory at the scratch directories.

        Existing definitions are rewritten in place, padded with blank lines, so Postfix's line
        numbers stay those of the real file and it has no "overriding earlier entry" to warn about.
        """
        wanted = {"queue_directory": self.queue, "data_directory": self.data}
        try:
            doc = MainCf.parse(text)
        except MainCfError:
            doc = None  # Postfix will refuse this main.cf itself; appending keeps its line numbers
        for param in doc.blocks if doc else []:
            if isinstance(param, Parameter) and param.name in wanted:
                eols = ["\r\n" if x.endswith("\r\n") else "\n" for x in param.lines]
                param.lines = [f"{param.name} = {wanted[param.name]}{eols[0]}", *eols[1:]]
        missing = [n for n in wanted if doc is None or doc.get(n) is None]
        text = doc.render() if doc else text
        sep = "" if text.endswith("\n") or not text else "\n"
        return text + sep + "".join(f"{name} = {wanted[name]}\n" for name in missing)

    def run(self, argv: Sequence[str]) -> _Run:
        """Run a Postfix command; stderr is a pty because postlog only writes to a terminal."""
        rc, output = run_with_tty(list(argv), env=c_env())
        return _Run(rc, [self.translate(x) for x in output.splitlines() if x.strip()])

    def translate(self, line: str) -> str:
        line = line.replace("\r", "").replace(self.config, self.source)
        return line.replace(self.queue, "<staged queue_directory>").replace(self.data, "<staged data_directory>")


def _postconf_check(stage: _Stage, postconf: str, baseline: _Run, outcome: Outcome) -> None:
    after = stage.run([postconf, "-c", stage.config, "-M"])
    outcome.checks.append(f"postconf -c {stage.source} -M: Postfix parsed the staged master.cf")
    if after.rc != 0:
        raise PostfixCheckError(_refusal("postconf -M", after.lines), path=stage.source, output="\n".join(after.lines))
    new = [x for x in _unique(after.lines) if x not in baseline.lines]
    refused = [x for x in new if "master.cf" in x]
    if refused:
        raise PostfixCheckError(_refusal("postconf -M", refused), path=stage.source, output="\n".join(refused))
    outcome.warnings.extend(x for x in new if x not in outcome.warnings)


def _postfix_check(stage: _Stage, postfix: Optional[str], baseline: _Run, outcome: Outcome) -> None:
    if postfix is None:
        outcome.checks.append("postfix check skipped: the postfix command is not installed")
        return
    if os.geteuid() != 0:
        outcome.checks.append("postfix check skipped: it needs root")
        return
    result = stage.run([postfix, "-c", stage.config, "check"])
    if result.rc != 0:
        outcome.checks.append(f"postfix -c {stage.source} check: failed on the staged copy")
        raise PostfixCheckError(_refusal("postfix check", result.lines), path=stage.source, output="\n".join(result.lines))
    outcome.checks.append(f"postfix -c {stage.source} check: passed on the staged copy")
    for line in _unique(result.lines):
        # Known before the change, an artifact of staging, or already reported.
        if line in baseline.lines or _MAKEDEFS_EXEMPT in line or "<staged " in line or line in outcome.warnings:
            continue
        outcome.warnings.append(line)


def _refusal(what: str, lines: list[str]) -> str:
    detail = "; ".join(_unique(lines)) or "no message (see the mail log)"
    return f"{what} refused the new configuration: {detail}"


def _unique(lines: list[str]) -> list[str]:
    return list(dict.fromkeys(lines))


def _special_files(directory: str, names: list[str]) -> list[str]:
    """Sockets, FIFOs and devices are not copied (copying a FIFO would block)."""
    skip = []
    for name in names:
        mode = os.lstat(os.path.join(directory, name)).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            skip.append(name)
    return skip


def _copy_preserving(src: str, dest: str) -> str:
    shutil.copy2(src, dest, follow_symlinks=False)
    if not os.path.islink(dest):
        copy_owner(src, dest)
    return dest
