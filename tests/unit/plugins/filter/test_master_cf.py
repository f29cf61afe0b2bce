"""master_cf_parse / master_cf_render / master_cf_entry filters."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.mailfleet.postfix.plugins.filter.master_cf import (
    FilterModule,
    master_cf_entry,
    master_cf_parse,
    master_cf_render,
)
from ansible_collections.mailfleet.postfix.tests import fixture_files

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "master.cf"
CORPUS = ROOT.parent / "shared" / "corpus"


def _read(path: Path) -> str:
    return fixture_files.read(path).decode("utf-8", "surrogateescape")


def _texts() -> list[Path]:
    corpus = sorted((CORPUS / "valid").glob("*.cf")) if CORPUS.is_dir() else []
    return fixture_files.paths(FIXTURES) + corpus


def _item(items: list[dict[str, Any]], service: str, kind: str, enabled: bool = True) -> dict[str, Any]:
    return next(i for i in items if i["kind"] == "entry" and (i["service"], i["type"], i["enabled"]) == (service, kind, enabled))


def _diff(before: str, after: str) -> tuple[list[str], list[str]]:
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    return [x for x in old if x not in new], [x for x in new if x not in old]


@pytest.fixture
def grammar() -> str:
    return _read(FIXTURES / "grammar.cf")


def test_filters_are_registered() -> None:
    assert set(FilterModule().filters()) == {"master_cf_parse", "master_cf_render", "master_cf_entry"}


@pytest.mark.parametrize("path", _texts(), ids=lambda p: p.name)
def test_parse_render_is_byte_exact(path: Path) -> None:
    text = _read(path)
    assert master_cf_render(master_cf_parse(text)) == text


@pytest.mark.skipif(not (CORPUS / "invalid").is_dir(), reason="no corpus")
@pytest.mark.parametrize("path", sorted((CORPUS / "invalid").glob("*.cf")) if CORPUS.is_dir() else [], ids=lambda p: p.name)
def test_invalid_corpus_is_refused_with_a_line(path: Path) -> None:
    with pytest.raises(AnsibleFilterError, match=r"^master_cf_parse: master.cf line \d+: field '"):
        master_cf_parse(_read(path))


def test_parse_items(grammar: str) -> None:
    items = master_cf_parse(grammar)
    assert items[0] == {"kind": "text", "line": 1, "raw": "".join(grammar.splitlines(True)[:6])}
    smtps = _item(items, "smtps", "inet", enabled=False)
    assert smtps["options"] == {"syslog_name": "postfix/smtps", "smtpd_tls_wrappermode": "yes"}
    assert smtps["line"] == 32


@pytest.mark.parametrize(
    ("text", "strict", "message"),
    [
        ("x tcp n - y - - smtpd\n", False, "master.cf line 1: field 'type' is 'tcp'"),
        ("x unix n - y - 1x smtp\n", False, "line 1: field 'maxproc' is '1x'"),
        ("x unix n - y - - smtp\n  -o\n", False, "line 2: '-o' without a value"),
        ("  -o a=b\nx unix n - y - - smtp\n", True, "line 1: continuation line before any entry"),
        ("x unix n - y - - smtp\nx unix n - y - - smtp\n", True, "line 2: duplicate entry for service 'x'"),
    ],
)
def test_parse_errors(text: str, strict: bool, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match="^master_cf_parse: ") as exc:
        master_cf_parse(text, strict=strict)
    assert message in str(exc.value)
    if strict:
        master_cf_parse(text)  # Postfix only warns: accepted unless strict


@pytest.mark.parametrize("value", [None, 42, ["a"], {"a": 1}])
def test_parse_wants_text(value: Any) -> None:
    with pytest.raises(AnsibleFilterError, match="master_cf_parse expects master.cf text"):
        master_cf_parse(value)


# --------------------------------------------------------------------------- render edits


def test_edited_option_changes_only_its_line(grammar: str) -> None:
    items = master_cf_parse(grammar)
    _item(items, "submission", "inet")["options"]["smtpd_tls_security_level"] = "may"
    assert _diff(grammar, master_cf_render(items)) == (
        ["  -o smtpd_tls_security_level=encrypt\n"], ["  -o smtpd_tls_security_level=may\n"])


def test_option_left_out_is_removed_and_null_too(grammar: str) -> None:
    items = master_cf_parse(grammar)
    options = _item(items, "127.0.0.1:10025", "inet")["options"]
    del options["receive_override_options"]
    options["smtpd_banner"] = None
    removed, added = _diff(grammar, master_cf_render(items))
    assert added == [] and removed == ["  -o { smtpd_banner = $myhostname  filtered mail gateway }\n",
                                       "  -o {receive_override_options=no_unknown_recipient_checks}\n"]


def test_enabling_and_disabling(grammar: str) -> None:
    items = master_cf_parse(grammar)
    _item(items, "smtps", "inet", enabled=False)["enabled"] = True
    _item(items, "lmtp", "unix")["enabled"] = False
    removed, added = _diff(grammar, master_cf_render(items))
    assert added == ["smtps     inet  n       -       y       -       -       smtpd\n", "  -o syslog_name=postfix/smtps\n",
                     "  -o smtpd_tls_wrappermode=yes\n", "#lmtp      unix  -       -       y       -       -       lmtp\n"]
    assert len(removed) == 4


def test_fields_of_a_disabled_entry_can_change(grammar: str) -> None:
    items = master_cf_parse(grammar)
    _item(items, "smtps", "inet", enabled=False)["chroot"] = "n"
    assert _diff(grammar, master_cf_render(items))[1] == ["#smtps     inet  n       -       n       -       -       smtpd\n"]


def test_renamed_entry_is_rendered_in_place(grammar: str) -> None:
    items = master_cf_parse(grammar)
    _item(items, "2525", "inet")["service"] = "2526"
    out = master_cf_render(items)
    assert _diff(grammar, out) == (["2525      inet  n       -       y       -       -       smtpd\n"],
                                   ["2526      inet  n       -       y       -       -       smtpd\n"])


def test_remove_reorder_and_add(grammar: str) -> None:
    items = [i for i in master_cf_parse(grammar) if i.get("service") != "lmtp"]
    items.append({"service": "new", "type": "unix", "command": "smtp", "args": ["-v"], "options": {"a": "b c"}})
    items.append({"kind": "text", "raw": "# the end\n"})
    out = master_cf_render(items)
    assert out.endswith(
        "grouped   unix  -       n       n       -       -       pipe\n"
        "  flags=R user=nobody argv=/usr/local/bin/filter { -s   two words } ${sender}\n"
        "new       unix  -       -       -       -       -       smtp -v\n"
        "  -o { a = b c }\n"
        "# the end\n"
    )


def test_new_entry_after_a_missing_final_newline_and_in_crlf() -> None:
    text = _read(FIXTURES / "no-final-newline.cf")
    out = master_cf_render([*master_cf_parse(text), {"service": "2525", "type": "inet", "command": "smtpd"}])
    assert out == text + "\n2525      inet  n       -       -       -       -       smtpd\n"
    crlf = _read(FIXTURES / "crlf.cf")
    out = master_cf_render([*master_cf_parse(crlf), {"service": "2525", "type": "inet", "command": "smtpd"}])
    assert out.endswith("pickup\r\n2525      inet  n       -       -       -       -       smtpd\r\n")


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ("text", "master_cf_render expects a list of items"),
        ({"a": 1}, "master_cf_render expects a list of items"),
        ([1], "item 0 is a int, expected a mapping"),
        ([{"kind": "text"}], "item 0 is a text item without its 'raw' text"),
        ([{"service": "x", "type": "tcp", "command": "smtp"}], "field 'type' is 'tcp'"),
        ([{"service": "x", "type": "unix"}], "field 'command' is missing"),
        ([{"kind": "text", "raw": "not an entry\n"}], "line 1: field 'unpriv' is missing"),
        ([{"kind": "text", "raw": "# ok\nx tcp n - y - - smtpd\n"}], "line 2: field 'type' is 'tcp'"),
    ],
)
def test_render_errors(items: Any, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match="^master_cf_render") as exc:
        master_cf_render(items)
    assert message in str(exc.value)


def test_bad_edit_names_the_item(grammar: str) -> None:
    items = master_cf_parse(grammar)
    _item(items, "pickup", "unix")["wakeup"] = "soon"
    with pytest.raises(AnsibleFilterError, match=r"item \d+ \(pickup/unix\): field 'wakeup' is 'soon'"):
        master_cf_render(items)


# --------------------------------------------------------------------------- master_cf_entry


def test_entry_column_style() -> None:
    entry = {"service": "submission", "type": "inet", "chroot": True, "command": "smtpd",
             "options": {"syslog_name": "postfix/submission", "smtpd_sasl_auth_enable": True, "gone": None}}
    assert master_cf_entry(entry) == (
        "submission inet  n       -       y       -       -       smtpd\n"
        "  -o syslog_name=postfix/submission\n"
        "  -o smtpd_sasl_auth_enable=yes\n"
    )


def test_entry_from_a_parsed_item(grammar: str) -> None:
    items = master_cf_parse(grammar)
    assert master_cf_entry(_item(items, "maildrop", "unix")) == (
        "maildrop  unix  -       n       n       -       -       pipe\n"
        "  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}\n"
    )
    assert master_cf_entry(_item(items, "smtps", "inet", enabled=False)).startswith("#smtps     inet  n")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("smtp inet", "master_cf_entry expects an entry dict, got str"),
        ({"service": "x", "type": "unix"}, "field 'command' is missing"),
        ({"service": "x", "type": "unix", "command": "smtp", "maxproc": "lots"}, "field 'maxproc' is 'lots'"),
        ({"service": "x", "type": "unix", "command": "smtp", "bogus": 1}, "unknown entry keys: bogus"),
    ],
)
def test_entry_errors(entry: Any, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match="^master_cf_entry") as exc:
        master_cf_entry(entry)
    assert message in str(exc.value)


# --------------------------------------------------------------------------- properties

_EDITS = st.sampled_from([
    ("maxproc", "7"), ("wakeup", "30?"), ("chroot", "n"), ("options", {"syslog_name": "x y"}),
    ("options", {}), ("enabled", False), ("enabled", True), ("args", ["-v"]),
])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_render_changes_only_edited_entries(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(_texts()))
    text = _read(path)
    items = master_cf_parse(text)
    entries = [i for i, item in enumerate(items) if item["kind"] == "entry"]
    index = data.draw(st.sampled_from(entries))
    edited = copy.deepcopy(items)
    key, value = data.draw(_EDITS)
    edited[index][key] = value
    out = master_cf_render(edited)
    before, after = "".join(i["raw"] for i in items[:index]), "".join(i["raw"] for i in items[index + 1:])
    assert out.startswith(before) and out.endswith(after)
    assert master_cf_render(master_cf_parse(out)) == out
