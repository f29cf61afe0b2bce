"""Robustness of the master.cf parser on arbitrary input (bounded in time for make test)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import (
    FIELDS,
    TYPES,
    MasterCf,
    MasterCfError,
)

# MAILFLEET_FUZZ_EXAMPLES raises the budget for a longer local run.
BUDGET = int(os.environ.get("MAILFLEET_FUZZ_EXAMPLES", "400"))

_word = st.sampled_from(
    ["smtp", "inet", "unix", "unix-dgram", "fifo", "pass", "n", "y", "-", "60", "0", "1000?", "smtpd",
     "-o", "name=value", "{", "}", "{ a = b c }", "#", "tcp", "x=", "=y", "-oa=b", "[::1]:25", "127.0.0.1:10025"]
)
_space = st.sampled_from([" ", "  ", "\t", " \t "])
_eol = st.sampled_from(["\n", "\r\n", ""])


@st.composite
def _line(draw: st.DrawFn) -> str:
    indent = draw(st.sampled_from(["", "", " ", "\t", "#", "# ", "#  "]))
    words = draw(st.lists(_word, min_size=0, max_size=12))
    sep = draw(_space)
    return indent + sep.join(words) + draw(_eol)


@st.composite
def _document(draw: st.DrawFn) -> str:
    lines = draw(st.lists(_line(), min_size=0, max_size=15))
    noise = draw(st.text(alphabet=st.characters(codec="utf-8"), max_size=20))
    return "".join(lines) + draw(st.sampled_from(["", noise]))


def _check(text: str) -> None:
    try:
        doc = MasterCf.parse(text)
    except MasterCfError as exc:
        assert exc.line is not None and exc.line >= 1, str(exc)
        assert str(exc).startswith(f"master.cf line {exc.line}: ")
        return
    assert doc.render() == text
    try:
        doc.validate()
    except MasterCfError as exc:
        assert exc.line is not None, str(exc)


@settings(max_examples=BUDGET, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_document())
def test_structured_noise_never_crashes(text: str) -> None:
    _check(text)


@settings(max_examples=BUDGET, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes(text: str) -> None:
    _check(text)


@settings(max_examples=BUDGET // 2, deadline=None)
@given(
    st.sampled_from(TYPES),
    st.lists(st.sampled_from(["-o", "a=b", "{ c = d e }", "-v", "x{y z}", "--"]), max_size=6),
)
def test_valid_entries_survive_edits(kind: str, args: list[str]) -> None:
    private = "n" if kind == "inet" else "-"
    service = "2525" if kind == "inet" else "svc"
    head = " ".join([service, kind, private, "-", "n", "-", "-", "smtpd"])
    text = head + (" " + " ".join(args) if args else "") + "\n"
    try:
        doc = MasterCf.parse(text)
    except MasterCfError as exc:
        assert exc.line == 1 and exc.field_name in (*FIELDS, "args", "options")
        return
    assert doc.render() == text
    doc.apply({"service": service, "type": kind, "options": {"fuzz_param": "a b"}})
    again = MasterCf.parse(doc.render())
    assert again.find(service, kind) is not None
    assert again.find(service, kind).options["fuzz_param"] == "a b"  # type: ignore[union-attr]
    assert not again.apply({"service": service, "type": kind, "options": {"fuzz_param": "a b"}})
