"""Paths in unit settings: written so that systemd reads back exactly the path, or refused.

The reader below re-implements what systemd does with a unit line (src/shared/conf-parser.c,
src/basic/extract-word.c, src/core/load-fragment.c config_parse_namespace_path_strv() and
config_parse_working_directory(), src/shared/specifier.c): shlex is not the same (it knows no
specifiers, and treats '#' and backslashes inside double quotes differently).
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils._classic_unit import build_classic_units
from ansible_collections.mailfleet.postfix.plugins.module_utils._masterless_units import Instance, UnitSet, build_units
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import MasterCfError
from ansible_collections.mailfleet.postfix.plugins.module_utils._systemd_sandbox import list_path, list_paths, unit_path

WHITESPACE = " \t\n\r"
# systemd.unit(5) "Specifiers": any other letter after '%' is an error, the word is then ignored.
SPECIFIERS = set("aAbBCdEfgGhHiIjJlLmMnNopPqsStTuUvVwW")


class Refused(Exception):
    """systemd logs a warning and ignores the word (or the whole setting)."""


def line_value(line: str) -> str:
    """conf-parser.c: the value after '=', blanks around it stripped; a trailing odd backslash continues."""
    assert "\n" not in line and "\0" not in line
    trailing = len(line) - len(line.rstrip("\\"))
    assert trailing % 2 == 0, "line continues onto the next one"
    return line.split("=", 1)[1].strip(WHITESPACE)


def extract_words(text: str, *, cunescape: bool) -> list[str]:
    """extract_first_word(EXTRACT_UNQUOTE [| EXTRACT_CUNESCAPE]) until the end: the words of a list setting."""
    words: list[str] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in WHITESPACE:
            pos += 1
        if pos >= n:
            return words
        word: list[str] = []
        quote = ""
        while pos < n:
            char = text[pos]
            if char == "\\":
                pos += 1
                if pos >= n:
                    raise Refused("trailing backslash")
                nxt = text[pos]
                if cunescape:
                    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
                              "\\": "\\", '"': '"', "'": "'", "s": " "}
                    if nxt not in simple:  # \xNN, octal, \u: not needed for any path written here
                        raise Refused(f"escape \\{nxt} not modelled")
                    word.append(simple[nxt])
                else:
                    word.append(nxt)
                pos += 1
            elif quote:
                if char == quote:
                    quote = ""
                else:
                    word.append(char)
                pos += 1
            elif char in "'\"":
                quote = char
                pos += 1
            elif char in WHITESPACE:
                break
            else:
                word.append(char)
                pos += 1
        if quote:
            raise Refused("unbalanced quoting")
        words.append("".join(word))


def expand_specifiers(text: str) -> str:
    """unit_path_printf(): '%%' is '%'; a specifier letter expands (here: to a marker), others fail."""
    out, pos = [], 0
    while pos < len(text):
        if text[pos] == "%":
            if pos + 1 >= len(text):
                raise Refused("lone '%'")
            letter = text[pos + 1]
            if letter == "%":
                out.append("%")
            elif letter in SPECIFIERS:
                out.append(f"<EXPANDED %{letter}>")
            else:
                raise Refused(f"unknown specifier %{letter}")
            pos += 2
        else:
            out.append(text[pos])
            pos += 1
    return "".join(out)


def check_path(path: str) -> str:
    """path_simplify_and_warn(PATH_CHECK_ABSOLUTE)."""
    if not path.startswith("/"):
        raise Refused("not absolute")
    if any(part in (".", "..") for part in path.split("/")):
        raise Refused("not normalized")
    return path


def read_list(line: str, *, cunescape: bool = False) -> list[tuple[str, str]]:
    """A ReadWritePaths=-like line as systemd stores it: (flags, path) per word."""
    out = []
    for word in extract_words(line_value(line), cunescape=cunescape):
        flags = ""
        if word.startswith("-"):
            flags, word = "-", word[1:]
        if word.startswith("+"):
            flags, word = flags + "+", word[1:]
        out.append((flags, check_path(expand_specifiers(word))))
    return out


def read_single(line: str) -> str:
    """A WorkingDirectory=-like line: the whole value, specifiers expanded."""
    return check_path(expand_specifiers(line_value(line)))


def settings(unit: str, name: str) -> list[str]:
    return [line for line in unit.splitlines() if line.startswith(name + "=")]


def build(text: str, **facts: object) -> UnitSet:
    return build_units(text, Instance(**facts), resolver=lambda h: ["127.0.0.1"], port_resolver=lambda p: 25)


def service_of(units: UnitSet, stem: str) -> str:
    return next(text for name, text in units.units.items() if stem in name and name.endswith(".service"))


# --------------------------------------------------------------------------- the reader itself


def test_the_reader_splits_like_systemd() -> None:
    assert read_list("ReadWritePaths=-/srv/vmail /etc") == [("-", "/srv/vmail"), ("", "/etc")]
    assert read_list('ReadWritePaths="-/a b" \'/c"d\' /e\\ f') == [("-", "/a b"), ("", '/c"d'), ("", "/e f")]
    assert read_list("ReadWritePaths=/srv/%h") == [("", "/srv/<EXPANDED %h>")]
    with pytest.raises(Refused):
        read_list("ReadWritePaths=/a rel")
    with pytest.raises(Refused):
        read_list("ReadWritePaths=/a%y")


# --------------------------------------------------------------------------- the examples


def test_virtual_mailbox_base_with_a_blank_is_one_path() -> None:
    """-o { virtual_mailbox_base = /srv/vmail /etc } made /etc writable for virtual(8) (root, DAC_OVERRIDE)."""
    units = build("virtual unix - n n - - virtual -o { virtual_mailbox_base = /srv/vmail /etc }\n")
    (line,) = settings(service_of(units, "virtual"), "ReadWritePaths")
    for cunescape in (False, True):
        paths = read_list(line, cunescape=cunescape)
        assert ("-", "/srv/vmail /etc") in paths
        assert all(path != "/etc" for _flags, path in paths)


def test_maillog_file_with_a_blank() -> None:
    units = build("postlog unix-dgram n - n - 1 postlogd -o { maillog_file = /var/log/my mail/postfix.log }\n")
    (line,) = settings(service_of(units, "postlog"), "ReadWritePaths")
    assert read_list(line) == [("-", "/var/spool/postfix"), ("-", "/var/lib/postfix"), ("-", "/var/log/my mail")]
    units = build("postlog unix-dgram n - n - 1 postlogd\n", maillog_file="/var/log/my mail/postfix.log")
    assert settings(service_of(units, "postlog"), "ReadWritePaths") == [line]


@pytest.mark.parametrize("spec", ["%h", "%t", "%%", "%"])
def test_percent_is_never_a_specifier(spec: str) -> None:
    base = f"/srv/{spec}vmail"
    queue = f"/var/spool/{spec}postfix"
    units = build(f"virtual unix - n n - - virtual -o virtual_mailbox_base={base}\n", queue_directory=queue)
    service = service_of(units, "virtual")
    (line,) = settings(service, "ReadWritePaths")
    assert read_list(line) == [("-", queue), ("-", "/var/lib/postfix"), ("-", base)]
    (cwd,) = settings(service, "WorkingDirectory")
    assert read_single(cwd) == queue


def test_holder_paths_are_quoted() -> None:
    units = build("pickup unix n - n 60 1 pickup\n", queue_directory="/var/spool/a b%t", data_directory="/var/lib/c'd")
    holder = next(text for name, text in units.units.items() if name.endswith("-holder.service"))
    (line,) = settings(holder, "ReadWritePaths")
    assert read_list(line) == [("", "/run/mailfleet-postfix/default"), ("-", "/var/spool/a b%t/pid"),
                               ("-", "/var/lib/c'd")]


def test_classic_uses_the_same_quoting() -> None:
    units = build_classic_units("virtual unix - n n - - virtual\n", {
        "queue_directory": "/var/spool/p q%h", "virtual_mailbox_base": "/srv/vmail /etc",
        "maillog_file": '/var/log/a"b/mail.log'})
    unit = next(iter(units.units.values()))
    (line,) = settings(unit, "ReadWritePaths")
    assert read_list(line) == [("-", "/var/spool/p q%h"), ("-", "/var/lib/postfix"), ("-", '/var/log/a"b'),
                               ("-", "/srv/vmail /etc")]
    (pid,) = settings(unit, "PIDFile")
    assert read_single(pid) == "/var/spool/p q%h/pid/master.pid"


def test_plain_paths_are_unchanged() -> None:
    """Nothing to quote: the output stays what it always was."""
    assert list_paths(["/var/spool/postfix", "/var/lib/postfix"], prefix="-") == "-/var/spool/postfix -/var/lib/postfix"
    assert unit_path("/var/spool/postfix") == "/var/spool/postfix"


# --------------------------------------------------------------------------- every path round-trips

ALPHABET = "ab/ -_.%\"'\\$#;:=+~*?[]{}()!,@&|<>`\u00e9\u20ac\u00a0"


def random_paths(count: int) -> list[str]:
    rng = random.Random(14)
    out: list[str] = []
    while len(out) < count:
        path = "/" + "".join(rng.choice(ALPHABET) for _unused in range(rng.randint(1, 24)))
        if not any(part in (".", "..") for part in path.split("/")):
            out.append(path)
    return out


@pytest.mark.parametrize("cunescape", [False, True])
def test_every_path_reads_back(cunescape: bool) -> None:
    paths = random_paths(2000)
    for path in paths:
        for prefix in ("", "-"):
            assert read_list(f"ReadWritePaths={list_path(path, prefix=prefix)}", cunescape=cunescape) == [
                (prefix, path)], path
    line = "ReadWritePaths=" + list_paths(paths, prefix="-")
    assert read_list(line, cunescape=cunescape) == [("-", p) for p in paths]


def test_every_single_path_reads_back() -> None:
    for path in random_paths(2000):
        if path == path.strip() and not path.endswith("\\"):
            assert read_single(f"WorkingDirectory={unit_path(path)}") == path, path


# --------------------------------------------------------------------------- what cannot be written


@pytest.mark.parametrize(("path", "reason"), [
    ("/var/spool/post\nfix", "control character"),
    ("/var/spool/post\0fix", "control character"),
    ("/var/spool/post\tfix", "control character"),
    ("var/spool/postfix", "not an absolute path"),
    ("", "not an absolute path"),
    ("/var/spool/../etc", "not normalized"),
    ("/var/spool/./postfix", "not normalized"),
    ("/var/spool/m\udcfcll", "not UTF-8"),
])
def test_refused(path: str, reason: str) -> None:
    with pytest.raises(MasterCfError, match=reason) as info:
        list_path(path, "queue_directory")
    assert info.value.field_name == "queue_directory"
    with pytest.raises(MasterCfError, match=reason):
        unit_path(path, "queue_directory")


@pytest.mark.parametrize("path", ["/var/spool/postfix ", "/var/spool/postfix\\"])
def test_single_path_ends_refused(path: str) -> None:
    with pytest.raises(MasterCfError, match="ends in a blank or a backslash"):
        unit_path(path, "queue_directory")
    assert read_list("X=" + list_path(path)) == [("", path)]  # a list word can carry it


def test_refusal_names_file_line_and_parameter() -> None:
    text = "smtp inet n - n - - smtpd\nvirtual unix - n n - - virtual -o virtual_mailbox_base=/srv/a\x01b\n"
    with pytest.raises(MasterCfError) as info:
        build_units(text, Instance(source="/etc/postfix/master.cf"), resolver=lambda h: ["127.0.0.1"],
                    port_resolver=lambda p: 25)
    assert info.value.line == 2 and info.value.path == "/etc/postfix/master.cf"
    assert info.value.field_name == "virtual_mailbox_base" and "control character" in str(info.value)


def test_a_line_break_never_reaches_a_unit() -> None:
    with pytest.raises(MasterCfError) as info:
        build_units("virtual unix - n n - - virtual\n", Instance(queue_directory="/var/spool/x\nExecStartPre=/bin/sh",
                                                                 source="/etc/postfix/master.cf"))
    # The socket's ListenStream= is rendered first: the last guard (render_unit) names the setting.
    assert "cannot be written on one unit file line" in str(info.value)
    assert "/etc/postfix/master.cf line 1" in str(info.value)


# --------------------------------------------------------------------------- systemd itself


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_reads_one_word(tmp_path: Path) -> None:
    """systemd warns about a word that is not absolute: an unquoted '/srv/a rel' would give one."""
    paths = ["/srv/a rel", '/srv/b "rel"', "/srv/c\\ rel", "/srv/d 'rel", "/srv/e%%rel", "/srv/f%h"]
    unit = tmp_path / "q.service"
    unit.write_text("[Service]\nExecStart=/bin/true\nReadWritePaths=" + list_paths(paths, prefix="-") + "\n"
                    "WorkingDirectory=" + unit_path("/srv/g %t") + "\n")
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                          check=False, timeout=60)
    output = proc.stdout + proc.stderr
    problems = [line for line in output.splitlines() if "q.service:" in line]
    assert not problems, output
    bad = tmp_path / "r.service"
    bad.write_text("[Service]\nExecStart=/bin/true\nReadWritePaths=-/srv/a rel\n")
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(bad)], capture_output=True, text=True,
                          check=False, timeout=60)
    assert "not absolute" in proc.stdout + proc.stderr  # the check above can see a split
