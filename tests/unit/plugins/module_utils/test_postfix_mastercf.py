"""master.cf document model: grammar, lossless round trips, edits, validation, the shared corpus."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.mailfleet.postfix.plugins.module_utils import _postfix_mastercf
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import (
    TYPES,
    MasterCf,
    MasterCfError,
    disabled_by,
    render_entry,
)
from ansible_collections.mailfleet.postfix.tests import fixture_files

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "master.cf"
CORPUS = ROOT.parent / "shared" / "corpus"
POSTCONF = shutil.which("postconf", path="/usr/sbin:/sbin:/usr/bin")


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "surrogateescape")


def _fixture(name: str) -> str:
    return fixture_files.read(FIXTURES / name).decode("utf-8", "surrogateescape")


def _entry(doc: MasterCf, service: str, kind: str, *, enabled: bool | None = True) -> dict:
    found = doc.find(service, kind, enabled=enabled)
    assert found is not None, f"{service}/{kind} not found"
    return found.to_dict()


def _changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """Lines only in before, lines only in after (multiset difference, order kept)."""
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    removed = [x for x in old if old.count(x) > new.count(x)]
    added = [x for x in new if new.count(x) > old.count(x)]
    return removed, added


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", [p.name for p in fixture_files.paths(FIXTURES)])
def test_fixture_round_trips_byte_exact(name: str) -> None:
    text = _fixture(name)
    assert MasterCf.parse(text).render() == text


def test_crlf_and_missing_final_newline_are_kept() -> None:
    crlf = _fixture("crlf.cf")
    assert "\r\n" in crlf and MasterCf.parse(crlf).eol() == "\r\n"
    tail = _fixture("no-final-newline.cf")
    assert not tail.endswith("\n") and MasterCf.parse(tail).render() == tail


# --------------------------------------------------------------------------- grammar


@pytest.fixture(scope="module")
def grammar() -> MasterCf:
    return MasterCf.parse(_fixture("grammar.cf"))


@pytest.mark.parametrize(
    ("service", "kind"),
    [
        ("2525", "inet"),
        ("submission", "inet"),
        ("127.0.0.1:10025", "inet"),
        ("[::1]:10026", "inet"),
        ("private/relay-out", "unix"),
        ("postlog", "unix-dgram"),
        ("qmgr", "fifo"),
        ("postscreen-pass", "pass"),
    ],
)
def test_service_name_forms_and_all_types(grammar: MasterCf, service: str, kind: str) -> None:
    assert _entry(grammar, service, kind)["type"] in TYPES


def test_same_service_name_with_two_types_is_two_entries(grammar: MasterCf) -> None:
    assert _entry(grammar, "qmgr", "unix")["wakeup"] == "300?"
    assert _entry(grammar, "qmgr", "fifo")["wakeup"] == "300"


def test_option_forms(grammar: MasterCf) -> None:
    assert _entry(grammar, "127.0.0.1:10025", "inet")["options"] == {
        "content_filter": "",  # -oname=value
        "smtpd_banner": "$myhostname  filtered mail gateway",  # -o { name = value with spaces }
        "receive_override_options": "no_unknown_recipient_checks",  # -o {name=value}
    }


def test_comment_and_blank_lines_do_not_end_an_entry(grammar: MasterCf) -> None:
    options = _entry(grammar, "submission", "inet")["options"]
    assert options["smtpd_sasl_auth_enable"] == "yes"
    assert options["smtpd_client_restrictions"] == "permit_sasl_authenticated,reject"


def test_tabs_between_fields_and_tab_indented_continuations(grammar: MasterCf) -> None:
    scache = _entry(grammar, "scache", "unix")
    assert (scache["chroot"], scache["maxproc"]) == ("y", "1")
    assert scache["options"] == {"smtp_connection_cache_time_limit": "2s"}
    ipv6 = _entry(grammar, "[::1]:10026", "inet")
    assert ipv6["args"] == ["-v"]
    assert ipv6["options"]["smtpd_authorized_xforward_hosts"] == "[::1]/128"


def test_defaults_wakeup_and_maxproc_forms(grammar: MasterCf) -> None:
    assert _entry(grammar, "tlsmgr", "unix")["wakeup"] == "1000?"
    flush = _entry(grammar, "flush", "unix")
    assert (flush["wakeup"], flush["maxproc"]) == ("0?", "0")
    assert _entry(grammar, "2525", "inet")["unpriv"] == "-"


def test_grouped_and_pipe_arguments(grammar: MasterCf) -> None:
    assert _entry(grammar, "maildrop", "unix")["args"] == [
        "flags=DRXhu", "user=vmail", "argv=/usr/bin/maildrop", "-d", "${recipient}",
    ]
    assert "-s   two words" in _entry(grammar, "grouped", "unix")["args"]


def test_commented_out_entry_keeps_its_option_lines(grammar: MasterCf) -> None:
    smtps = _entry(grammar, "smtps", "inet", enabled=False)
    assert smtps["enabled"] is False and smtps["line"] == 32
    assert smtps["options"] == {"syslog_name": "postfix/smtps", "smtpd_tls_wrappermode": "yes"}
    assert smtps["raw"].count("\n") == 3


def test_to_list_covers_every_line(grammar: MasterCf) -> None:
    items = grammar.to_list()
    assert "".join(i["raw"] for i in items) == _fixture("grammar.cf")
    numbers = [i["line"] for i in items]
    assert numbers == sorted(numbers) and numbers[0] == 1


def test_leading_continuation_is_a_warning_then_strict_error() -> None:
    doc = MasterCf.parse(_fixture("leading-continuation.cf"))
    assert doc.warnings == ["master.cf line 1: continuation line before any entry; Postfix ignores it"]
    doc.validate()
    with pytest.raises(MasterCfError, match="line 1: continuation line before any entry") as exc:
        doc.validate(strict=True)
    assert exc.value.line == 1


# --------------------------------------------------------------------------- bad input

_HEAD = "smtp      inet  n       -       y       -       -       smtpd\n"

BAD = [
    # (text, line, field, message fragment)
    (_HEAD + "x tcp n - y - - smtpd\n", 2, "type", "field 'type' is 'tcp'; expected one of inet, unix, unix-dgram, fifo, pass"),
    (_HEAD + "x unix n - y - -\n", 2, "command", "field 'command' is missing"),
    (_HEAD + "x unix\n", 2, "private", "needs at least 8 fields"),
    ("x unix yes - y - - smtp\n", 1, "private", "field 'private' is 'yes'; expected one of y, n, -"),
    ("x unix - N y - - smtp\n", 1, "unpriv", "field 'unpriv' is 'N'"),
    ("x unix - - maybe - - smtp\n", 1, "chroot", "field 'chroot' is 'maybe'"),
    ("x inet y - y - - smtpd\n", 1, "private", "inet services cannot be private"),
    ("x unix - - y - abc smtp\n", 1, "maxproc", "field 'maxproc' is 'abc'; expected a number of processes"),
    ("x unix - - y - -1 smtp\n", 1, "maxproc", "field 'maxproc' is '-1'"),
    ("x unix - - y 1x - smtp\n", 1, "wakeup", "field 'wakeup' is '1x'; expected a number of seconds"),
    ("x unix - - y -5 - smtp\n", 1, "wakeup", "field 'wakeup' is '-5'"),
    (_HEAD + "  -o\n", 2, "options", "'-o' without a value"),
    (_HEAD + "  -o smtpd_banner\n", 2, "options", "missing '='"),
    (_HEAD + "# note\n  -o { smtpd_banner = open\n", 3, "options", "missing '}'"),
    (_HEAD + "  { unterminated\n", 2, "args", "missing '}'"),
    ("......\n", 1, "type", "field 'type' is missing"),
]


@pytest.mark.parametrize(("text", "line", "field", "fragment"), BAD)
def test_bad_input_names_line_and_field(text: str, line: int, field: str, fragment: str) -> None:
    with pytest.raises(MasterCfError) as exc:
        MasterCf.parse(text, path="/etc/postfix/master.cf").validate()
    assert (exc.value.line, exc.value.field_name) == (line, field)
    assert fragment in str(exc.value)
    assert str(exc.value).startswith(f"/etc/postfix/master.cf line {line}: ")


@pytest.mark.parametrize(("text", "line"), [
    (_HEAD + "25        inet  n       -       y       -       -       smtpd\n", 2),
    ("x unix - - y - - smtp\nx unix - - n - - smtp\n", 2),
])
def test_duplicates_are_warnings_except_in_strict_mode(text: str, line: int) -> None:
    doc = MasterCf.parse(text, path="/etc/postfix/master.cf")
    doc.validate()  # master(8) runs the last entry
    assert len(doc.duplicate_warnings()) == 1 and f"line {line}:" in doc.duplicate_warnings()[0]
    with pytest.raises(MasterCfError) as exc:
        doc.validate(strict=True)
    assert (exc.value.line, exc.value.field_name) == (line, "service") and "duplicate entry" in str(exc.value)


def test_an_edit_may_keep_but_not_add_duplicates() -> None:
    before = MasterCf.parse("x unix - - y - - smtp\nx unix - - n - - smtp\n")
    before.validate_edit(before)
    after = MasterCf.parse(before.render() + "y unix - - n - - smtp\ny unix - - n - - smtp\n")
    with pytest.raises(MasterCfError, match="line 4: duplicate entry for service 'y'"):
        after.validate_edit(before)


def test_private_and_public_unix_services_are_distinct() -> None:
    MasterCf.parse("x unix y - y - - smtp\nx unix n - y - - smtp\n").validate()


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"service": "x", "type": "tcp"}, "type"),
        ({"service": "x", "type": "unix", "private": "maybe"}, "private"),
        ({"service": "x", "type": "unix", "wakeup": "soon"}, "wakeup"),
        ({"service": "x", "type": "unix", "maxproc": -3}, "maxproc"),
        ({"service": "x", "type": "inet", "private": True, "command": "smtpd"}, "private"),
        ({"service": "x", "type": "unix", "options": {"a": "{b"}}, "options"),
        ({"service": "x", "type": "unix", "options": {"bad name": "1"}}, "options"),
        ({"service": "x", "type": "unix", "args": "not a list"}, "args"),
        ({"service": "new", "type": "unix"}, "command"),
        ({"type": "unix"}, "service"),
    ],
)
def test_bad_specs_are_refused_without_changing_the_document(spec: dict, field: str) -> None:
    text = _fixture("stock.cf")
    doc = MasterCf.parse(text)
    with pytest.raises(MasterCfError) as exc:
        doc.apply(spec)
    assert exc.value.field_name == field
    assert doc.render() == text


# --------------------------------------------------------------------------- edits


def _apply(text: str, spec: dict) -> tuple[str, bool]:
    doc = MasterCf.parse(text)
    changed = doc.apply(spec)
    out = doc.render()
    again = MasterCf.parse(out)
    again.validate()
    assert not again.apply(spec), "a second apply must be a no-op"
    return out, changed


def test_option_edit_touches_only_its_line() -> None:
    text = _fixture("stock.cf")
    out, changed = _apply(text, {"service": "relay", "type": "unix", "options": {"syslog_name": "postfix/relay"}})
    assert changed
    assert _changed_lines(text, out) == (
        ["        -o syslog_name=postfix/$service_name\n"],
        ["        -o syslog_name=postfix/relay\n"],
    )


def test_field_edit_keeps_the_columns() -> None:
    text = _fixture("stock.cf")
    out, _changed = _apply(text, {"service": "smtp", "type": "inet", "maxproc": 20, "chroot": False})
    assert _changed_lines(text, out)[1] == ["smtp      inet  n       -       n       -       20      smtpd\n"]


def test_new_option_goes_on_a_continuation_line_before_pipe_arguments() -> None:
    text = _fixture("stock.cf")
    out, _changed = _apply(text, {"service": "maildrop", "type": "unix", "options": {"a_param": "two words"}})
    lines = out.splitlines()
    at = lines.index("maildrop  unix  -       n       n       -       -       pipe")
    assert lines[at + 1] == "  -o { a_param = two words }"
    assert lines[at + 2].startswith("  flags=DRXhu")


def test_option_null_removes_and_purge_removes_the_rest() -> None:
    text = _fixture("grammar.cf")
    out, _changed = _apply(text, {"service": "submission", "type": "inet", "options": {"smtpd_sasl_auth_enable": None}})
    assert "smtpd_sasl_auth_enable" not in out
    out, _changed = _apply(text, {"service": "submission", "type": "inet", "purge_options": True,
                           "options": {"syslog_name": "postfix/submission"}})
    assert _entry(MasterCf.parse(out), "submission", "inet")["options"] == {"syslog_name": "postfix/submission"}
    assert "# a comment inside an entry does not end it\n" in out


def test_disable_keeps_option_lines_and_present_re_enables() -> None:
    text = _fixture("stock.cf")
    out, changed = _apply(text, {"service": "relay", "type": "unix", "state": "disabled"})
    assert changed and "#relay     unix" in out and "#        -o syslog_name=postfix/$service_name" in out
    back, changed = _apply(out, {"service": "relay", "type": "unix", "state": "present"})
    assert changed and back == text


def test_disabled_entry_takes_field_values_and_stays_disabled() -> None:
    text = _fixture("stock.cf")
    spec = {"service": "submission", "type": "inet", "state": "disabled", "options": {"smtpd_tls_security_level": "may"}}
    out, changed = _apply(text, spec)
    assert changed
    assert _changed_lines(text, out) == (
        ["#  -o smtpd_tls_security_level=encrypt\n"],
        ["#  -o smtpd_tls_security_level=may\n"],
    )


def test_absent_removes_the_entry_and_its_continuations_only() -> None:
    text = _fixture("stock.cf")
    out, changed = _apply(text, {"service": "maildrop", "type": "unix", "state": "absent"})
    assert changed and "maildrop" not in out and "flags=DRXhu" not in out
    assert out.endswith("# Delivery through external programs.\n#\n")
    assert _apply(text, {"service": "nothere", "type": "unix", "state": "absent"}) == (text, False)


def test_new_entry_is_appended_in_column_style() -> None:
    text = _fixture("stock.cf")
    spec = {"service": "127.0.0.1:10025", "type": "inet", "unpriv": "n", "chroot": "n", "command": "smtpd",
            "options": {"content_filter": "", "smtpd_banner": "filtered mail"}}
    out, changed = _apply(text, spec)
    assert changed and out.startswith(text)
    assert out[len(text):] == (
        "127.0.0.1:10025 inet  n       n       n       -       -       smtpd\n"
        "  -o content_filter=\n"
        "  -o { smtpd_banner = filtered mail }\n"
    )


def test_edits_keep_crlf_and_missing_final_newline() -> None:
    out, _changed = _apply(_fixture("crlf.cf"), {"service": "pickup", "type": "unix", "options": {"a": "1"}})
    assert out.count("\r\n") == out.count("\n")
    out, _changed = _apply(_fixture("no-final-newline.cf"), {"service": "new", "type": "unix", "command": "smtp"})
    assert "pickup\nnew " in out and out.endswith("smtp\n")


def test_attached_option_is_rewritten_detached() -> None:
    # postconf 3.7 misreads "-oname=value"; a value we write is always "-o name=value".
    spec = {"service": "127.0.0.1:10025", "type": "inet", "options": {"content_filter": "smtp:[127.0.0.1]:10024"}}
    out, _changed = _apply(_fixture("grammar.cf"), spec)
    assert "  -o content_filter=smtp:[127.0.0.1]:10024\n" in out


def test_repeated_option_collapses_to_one() -> None:
    text = "qmgr fifo n - n 300 1 qmgr\n  -o syslog_name=a\n  -o syslog_name=b\n#\n  -o syslog_name=c\n"
    out, changed = _apply(text, {"service": "qmgr", "type": "fifo", "options": {"syslog_name": "new"}})
    assert changed and out == "qmgr fifo n - n 300 1 qmgr\n#\n  -o syslog_name=new\n"
    out, _changed = _apply("x unix - - y - - smtp -o a=1 -o a=2 -o a=3\n", {"service": "x", "type": "unix", "options": {"a": "9"}})
    assert out == "x unix - - y - - smtp -o a=9\n"


def test_args_replace_rewrites_only_that_entry() -> None:
    text = _fixture("stock.cf")
    args = ["flags=DRhu", "user=vmail", "argv=/usr/bin/maildrop", "-d", "${recipient}"]
    out, _changed = _apply(text, {"service": "maildrop", "type": "unix", "args": args})
    assert _changed_lines(text, out) == (
        ["  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}\n"],
        ["  flags=DRhu user=vmail argv=/usr/bin/maildrop -d ${recipient}\n"],
    )


def test_render_entry_groups_whitespace() -> None:
    text = render_entry({"service": "x", "type": "unix", "command": "pipe", "args": ["a b", "c"], "options": {"o": "p q"}})
    assert text == "x         unix  -       -       -       -       -       pipe\n  -o { o = p q }\n  { a b } c\n"


# --------------------------------------------------------------------------- properties

_SERVICES = {
    "inet": st.sampled_from(["smtp", "2525", "127.0.0.1:10025", "[::1]:26", "submission"]),
    "unix": st.sampled_from(["pickup", "relay", "private/out"]),
    "unix-dgram": st.just("postlog"),
    "fifo": st.just("qmgr"),
    "pass": st.just("smtpd-pass"),
}
_FLAG = st.sampled_from(["y", "n", "-"])
_SEP = st.sampled_from([" ", "  ", "\t", " \t"])
_PARAM = st.sampled_from(["syslog_name", "smtpd_banner", "content_filter", "milter_macro_daemon_name"])
_VALUE = st.sampled_from(["", "x", "postfix/$service_name", "a b", "[127.0.0.1]:10025"])


@st.composite
def _option(draw: st.DrawFn) -> str:
    name, value = draw(_PARAM), draw(_VALUE)
    if " " in value or draw(st.booleans()):
        return draw(st.sampled_from(["-o { %s = %s }", "-o {%s=%s}"])) % (name, value)
    return draw(st.sampled_from(["-o %s=%s", "-o%s=%s"])) % (name, value)


@st.composite
def _entry_text(draw: st.DrawFn, kind: str, service: str) -> str:
    private = "n" if kind == "inet" else draw(_FLAG)
    fields = [service, kind, private, draw(_FLAG), draw(_FLAG),
              draw(st.sampled_from(["-", "0", "60", "1000?", "0?"])), draw(st.sampled_from(["-", "0", "1", "100"])),
              draw(st.sampled_from(["smtpd", "smtp", "pipe", "qmgr"]))]
    sep = draw(_SEP)
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    text = sep.join(fields)
    if draw(st.booleans()):
        text += " -v"
    for opt in draw(st.lists(_option(), max_size=3)):
        indent = draw(st.sampled_from(["  ", "\t", "        "]))
        between = draw(st.sampled_from(["", "", f"#{eol}", eol]))
        text += f"{eol}{between}{indent}{opt}"
    if draw(st.booleans()):
        text += f"{eol}  flags=R user=nobody argv=/bin/cat {{ a  b }} ${{sender}}"
    return text + eol


@st.composite
def _document(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    keys, parts = [], []
    for kind in draw(st.lists(st.sampled_from(sorted(_SERVICES)), min_size=1, max_size=6)):
        service = draw(_SERVICES[kind])
        if (service, kind) in keys or (service, kind) in (("25", "inet"), ("smtp", "inet")) and (
            ("smtp", "inet") in keys or ("25", "inet") in keys
        ):
            continue
        keys.append((service, kind))
        if draw(st.booleans()):
            parts.append(draw(st.sampled_from(["# comment\n", "\n", "   \n", "#\n"])))
        parts.append(draw(_entry_text(kind, service)))
    text = "".join(parts)
    if draw(st.booleans()):
        text = text.rstrip("\r\n")
    return text, keys


@settings(max_examples=80, deadline=None)
@given(_document())
def test_generated_documents_round_trip(doc_keys: tuple[str, list[tuple[str, str]]]) -> None:
    text, keys = doc_keys
    doc = MasterCf.parse(text)
    assert doc.render() == text
    assert [e.key for e in doc.entries()] == keys
    doc.validate()


@settings(max_examples=60, deadline=None)
@given(_document(), st.data())
def test_edit_is_idempotent_and_touches_only_its_entry(doc_keys: tuple[str, list[tuple[str, str]]], data: st.DataObject) -> None:
    text, keys = doc_keys
    service, kind = data.draw(st.sampled_from(keys))
    spec = {
        "service": service,
        "type": kind,
        "state": data.draw(st.sampled_from(["present", "present", "disabled", "absent"])),
        "options": {data.draw(_PARAM): data.draw(st.sampled_from([None, "new", "new value"]))},
        "maxproc": data.draw(st.sampled_from([None, 7])),
    }
    doc = MasterCf.parse(text)
    prefix, suffix = _around(text, doc, service, kind)
    doc.apply(spec)
    out = doc.render()
    again = MasterCf.parse(out)
    assert not again.apply(spec)
    assert again.render() == out
    assert out.startswith(prefix) and out.endswith(suffix) and len(out) >= len(prefix) + len(suffix)


def _around(text: str, doc: MasterCf, service: str, kind: str) -> tuple[str, str]:
    """The text before and after the lines of entry service/kind."""
    entry = doc.find(service, kind, enabled=None)
    assert entry is not None
    lines = text.splitlines(keepends=True)
    start = entry.first_line - 1
    return "".join(lines[:start]), "".join(lines[start + len(entry.lines):])


# --------------------------------------------------------------------------- corpus


def _corpus(kind: str) -> list[Path]:
    return sorted((CORPUS / kind).glob("*.cf")) if CORPUS.is_dir() else []


corpus_valid = pytest.mark.parametrize("path", _corpus("valid") or [pytest.param(None, marks=pytest.mark.skip("no corpus"))],
                                       ids=lambda p: p.name if p else "none")
corpus_invalid = pytest.mark.parametrize("path", _corpus("invalid") or [pytest.param(None, marks=pytest.mark.skip("no corpus"))],
                                         ids=lambda p: p.name if p else "none")


@corpus_valid
def test_corpus_valid_round_trips(path: Path) -> None:
    text = _read(path)
    doc = MasterCf.parse(text, path=path.name)
    assert doc.render() == text
    doc.validate()
    assert "".join(item["raw"] for item in doc.to_list()) == text


@corpus_invalid
def test_corpus_invalid_is_refused_with_a_line(path: Path) -> None:
    with pytest.raises(MasterCfError) as exc:
        MasterCf.parse(_read(path), path=path.name).validate()
    assert exc.value.line is not None and exc.value.field_name is not None
    assert f"{path.name} line {exc.value.line}: " in str(exc.value)


def _our_verdict(text: str) -> bool:
    try:
        for entry in MasterCf.parse(text).entries(enabled=True):
            entry.validate()  # postconf does not look for duplicates; master does
    except MasterCfError:
        return False
    return True


@pytest.mark.skipif(POSTCONF is None, reason="Postfix is not installed")
@pytest.mark.skipif(not CORPUS.is_dir(), reason="no corpus")
def test_corpus_verdicts_agree_with_postconf(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text("compatibility_level = 3.6\n")
    os.utime(tmp_path / "main.cf", (0, 0))  # postconf waits while main.cf is under 2 s old
    disagree = []
    for path in _corpus("valid") + _corpus("invalid"):
        shutil.copyfile(path, tmp_path / "master.cf")
        run = subprocess.run([str(POSTCONF), "-c", str(tmp_path), "-M"], capture_output=True, text=True, check=False)
        if (run.returncode == 0) != _our_verdict(_read(path)):
            disagree.append(f"{path.name}: postconf rc={run.returncode} {run.stderr.strip()}")
    assert not disagree


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="09aZ_.-+/:[]%?\n é٣", max_size=8))
def test_field_checks_match_the_regexes_they_replace(text: str) -> None:
    """The checks use str methods (re costs the generator start-up time) but must accept exactly the same.

    fullmatch, not match with '$': '$' also matches before a final newline, and a field never holds one.
    """
    assert _postfix_mastercf._wakeup_ok(text) == bool(re.fullmatch(r"-|[0-9]+\??", text))
    assert _postfix_mastercf._maxproc_ok(text) == bool(re.fullmatch(r"-|[0-9]+", text))
    inet = re.fullmatch(r"(?:(\[[0-9A-Fa-f:.%a-zA-Z]+\]|[A-Za-z0-9_.-]+):)?([A-Za-z0-9_-]+)", text)
    assert _postfix_mastercf._inet_name_ok(text) == bool(inet)
    local = re.fullmatch(r"[A-Za-z0-9_.+/-]+", text)
    assert _postfix_mastercf._all_in(text, _postfix_mastercf._ALNUM + "_.+/-") == bool(local)


@pytest.mark.parametrize(("setting", "service", "kind", "expected"), [
    ("", "smtp", "inet", False),
    ("inet", "smtp", "inet", True),
    ("smtp/inet", "smtp", "inet", True),
    ("smtp.inet", "smtp", "inet", True),
    ("smtp/inet", "submission", "inet", False),
    ("!smtp/inet, inet", "smtp", "inet", False),  # the first match wins, as in set_master_ent()
    ("inet, !smtp/inet", "smtp", "inet", True),
    ("unix", "smtp", "inet", False),
])
def test_disabled_by_master_service_disable(setting: str, service: str, kind: str, expected: bool) -> None:
    assert disabled_by(service, kind, setting) is expected
