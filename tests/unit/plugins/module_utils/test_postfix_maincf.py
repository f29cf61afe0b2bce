"""main.cf document model: lossless round trips, parameter edits, errors with line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_maincf import (
    MainCf,
    MainCfError,
    apply_settings,
    format_value,
)
from ansible_collections.mailfleet.postfix.tests import fixture_files

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "main.cf"


def _fixture(name: str) -> str:
    return fixture_files.read(FIXTURES / name).decode("utf-8", "surrogateescape")


@pytest.mark.parametrize("name", [p.name for p in fixture_files.paths(FIXTURES)])
def test_fixture_round_trips_byte_exact(name: str) -> None:
    text = _fixture(name)
    assert MainCf.parse(text).render() == text


def test_values_as_postfix_reads_them() -> None:
    params = MainCf.parse(_fixture("stock.cf")).parameters()
    assert params["smtpd_relay_restrictions"] == "permit_mynetworks    permit_sasl_authenticated    defer_unauth_destination"
    assert params["compatibility_level"] == "3.6"
    spacing = MainCf.parse(_fixture("spacing.cf"))
    assert spacing.get("myhostname") == "last.example"  # the last definition wins
    assert spacing.get("alias_maps") == "hash:/etc/aliases,\thash:/etc/postfix/aliases"
    # Postfix joins continuation lines as they are; a CR stays in the value, as whitespace.
    assert MainCf.parse(_fixture("crlf.cf")).get("mynetworks") == "127.0.0.0/8\r    [::1]/128"


def test_set_rewrites_only_that_parameter() -> None:
    text = _fixture("stock.cf")
    doc = MainCf.parse(text)
    assert doc.set("myhostname", "mail.example.org")
    assert doc.render() == text.replace("myhostname = mx.example.net\n", "myhostname = mail.example.org\n")


def test_multi_line_value_keeps_its_inner_comment() -> None:
    doc = MainCf.parse(_fixture("stock.cf"))
    doc.set("smtpd_relay_restrictions", "permit_mynetworks, reject")
    assert "smtpd_relay_restrictions = permit_mynetworks, reject\n# still part of the value above\n" in doc.render()


def test_whitespace_only_difference_is_no_change() -> None:
    doc = MainCf.parse(_fixture("stock.cf"))
    assert not doc.set("smtpd_relay_restrictions", "permit_mynetworks permit_sasl_authenticated defer_unauth_destination")


def test_remove_and_append() -> None:
    text = _fixture("spacing.cf")
    doc = MainCf.parse(text)
    assert apply_settings(doc, {"myhostname": None, "relayhost": "[relay.example]:587", "absent_one": None}) == [
        "myhostname", "relayhost",
    ]
    out = doc.render()
    assert "myhostname" not in out and out.endswith("default_process_limit = 50\nrelayhost = [relay.example]:587\n")


def test_appending_keeps_crlf_and_adds_the_missing_newline() -> None:
    crlf = MainCf.parse(_fixture("crlf.cf"))
    crlf.set("relayhost", "x")
    assert crlf.render().endswith("\r\nrelayhost = x\r\n")
    tail = MainCf.parse(_fixture("no-final-newline.cf"))
    tail.set("biff", "no")
    assert tail.render() == "myhostname = a.example\nrelayhost = [relay.example]:25\nbiff = no\n"


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "yes"), (False, "no"), (25, "25"), (["a", "b"], "a, b"), ("  padded  ", "padded"), ("", "")],
)
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize(
    ("settings_", "fragment"),
    [
        ({"myhostname": "a\nb"}, "parameter 'myhostname': a main.cf value cannot contain a newline"),
        ({"myhostname": {"nested": 1}}, "not a mapping"),
        ({"bad name": "x"}, "'bad name' is not a valid parameter name"),
    ],
)
def test_bad_settings_change_nothing(settings_: dict, fragment: str) -> None:
    text = _fixture("stock.cf")
    doc = MainCf.parse(text, path="/etc/postfix/main.cf")
    with pytest.raises(MainCfError, match=fragment) as exc:
        apply_settings(doc, settings_)
    assert str(exc.value).startswith("/etc/postfix/main.cf: ")
    assert doc.render() == text


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("biff = no\nfoo bar\n", 2, "'foo bar' has no '='; expected 'name = value'"),
        ("  indented = 1\n", 1, "continuation line before any parameter"),
        ("# c\n\nbad-name! = x\n", 3, "is not a valid parameter name"),
    ],
)
def test_bad_main_cf_names_the_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(MainCfError) as exc:
        MainCf.parse(text, path="/etc/postfix/main.cf")
    assert exc.value.line == line
    assert str(exc.value).startswith(f"/etc/postfix/main.cf line {line}: ") and fragment in str(exc.value)


_NAME = st.sampled_from(["myhostname", "relayhost", "mynetworks", "smtpd_banner", "biff"])
_VALUE = st.sampled_from(["", "x", "a b", "[relay.example]:25", "$myhostname ESMTP"])


@st.composite
def _main_cf(draw: st.DrawFn) -> str:
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    out = []
    for name in draw(st.lists(_NAME, max_size=8)):
        if draw(st.booleans()):
            out.append(draw(st.sampled_from(["# comment", "", "   ", "\t# indented"])) + eol)
        sep = draw(st.sampled_from([" = ", "=", "  =\t"]))
        line = name + sep + draw(_VALUE)
        for _line in range(draw(st.integers(0, 2))):
            line += eol + draw(st.sampled_from(["  ", "\t"])) + draw(_VALUE).strip() + "x"
        out.append(line + eol)
    text = "".join(out)
    return text.rstrip("\r\n") if draw(st.booleans()) else text


@settings(max_examples=100, deadline=None)
@given(_main_cf(), st.dictionaries(_NAME, st.one_of(st.none(), _VALUE, st.booleans(), st.lists(_VALUE, max_size=3)), max_size=3))
def test_round_trip_and_idempotent_settings(text: str, wanted: dict) -> None:
    doc = MainCf.parse(text)
    assert doc.render() == text
    apply_settings(doc, wanted)
    out = doc.render()
    again = MainCf.parse(out)
    assert apply_settings(again, wanted) == []
    assert again.render() == out
    for name, value in wanted.items():
        assert (again.get(name) is None) == (value is None)
