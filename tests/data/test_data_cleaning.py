"""Cleaning transforms: normalisation, length filter, PII scrub; each with its report."""

from __future__ import annotations

import re

import pytest

from llmops.data.cleaning import filter_length, normalize, normalize_text, scrub_pii
from llmops.data.schemas import Row, SchemaKind
from llmops.errors import InvalidInput

CHAT = SchemaKind.CHAT
PC = SchemaKind.PROMPT_COMPLETION


class FakeEmailDetector:
    """Stands in for a security detector: redacts e-mail addresses."""

    pattern = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")

    def redact(self, text: str) -> tuple[str, int]:
        return self.pattern.subn("[EMAIL]", text)


def test_normalize_text_whitespace_and_unicode() -> None:
    assert normalize_text("  a \t\t b  ") == "a b"
    assert normalize_text("line 1  \r\n   line 2\r\rpara") == "line 1\nline 2\n\npara"
    assert normalize_text("a\n\n\n\n\nb") == "a\n\nb"
    assert normalize_text("zero\u200bwidth\x00 no\u00a0break") == "zerowidth no break"
    decomposed = "cafe\u0301"
    assert normalize_text(decomposed) == "caf\u00e9"
    assert normalize_text(decomposed, "NFD") == decomposed
    assert normalize_text("ﬁ", "NFKC") == "fi"


def test_normalize_rows_reports_modified_and_keeps_input() -> None:
    rows: list[Row] = [
        {"prompt": " a  b ", "completion": "c"},
        {"prompt": "clean", "completion": "done"},
        {"prompt": "x", "completion": "y\t\tz", "id": 3},
    ]
    out, report = normalize(rows, PC)
    assert out == [
        {"prompt": "a b", "completion": "c"},
        {"prompt": "clean", "completion": "done"},
        {"prompt": "x", "completion": "y z", "id": 3},
    ]
    assert rows[0]["prompt"] == " a  b "
    assert (report.name, report.rows_in, report.rows_out, report.rows_modified) == ("normalize", 3, 3, 2)
    assert report.params == {"form": "NFC"}


def test_normalize_chat_contents_only() -> None:
    rows = [
        {"messages": [{"role": "user", "content": " hi  there "}, {"role": "assistant", "content": "ok"}]}
    ]
    out, _ = normalize(rows, CHAT)
    assert out[0]["messages"] == [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "ok"},
    ]


def test_normalize_rejects_unknown_form() -> None:
    with pytest.raises(InvalidInput, match="NFC, NFD, NFKC, NFKD") as info:
        normalize([{"text": "a"}], SchemaKind.TEXT, form="NFX")
    assert info.value.param == "form"


def test_filter_length_counts_short_and_long() -> None:
    rows = [{"text": " ".join(["w"] * n)} for n in (1, 2, 3, 5, 8, 13)]
    out, report = filter_length(rows, SchemaKind.TEXT, lambda s: len(s.split()), min_tokens=2, max_tokens=8)
    assert [len(r["text"].split()) for r in out] == [2, 3, 5, 8]
    assert report.removed == {"too_short": 1, "too_long": 1}
    assert (report.rows_in, report.rows_out, report.rows_removed) == (6, 4, 2)
    assert report.params == {"min_tokens": 2, "max_tokens": 8}


def test_filter_length_validates_bounds() -> None:
    with pytest.raises(InvalidInput, match="below min_tokens"):
        filter_length([], SchemaKind.TEXT, len, min_tokens=5, max_tokens=2)
    with pytest.raises(InvalidInput, match="use 0 or more"):
        filter_length([], SchemaKind.TEXT, len, min_tokens=-1)


def test_scrub_pii_every_text_field() -> None:
    rows = [
        {"prompt": "mail a@b.com", "completion": "sent to c@d.org and e@f.net"},
        {"prompt": "nothing here", "completion": "ok"},
    ]
    out, report = scrub_pii(rows, PC, FakeEmailDetector())
    assert out[0] == {"prompt": "mail [EMAIL]", "completion": "sent to [EMAIL] and [EMAIL]"}
    assert out[1] == rows[1]
    assert rows[0]["prompt"] == "mail a@b.com"
    assert (report.findings, report.rows_modified, report.rows_out) == (3, 1, 2)
    assert report.params == {"detector": "FakeEmailDetector"}

    chat = [
        {
            "messages": [
                {"role": "user", "content": "I am x@y.io"},
                {"role": "assistant", "content": "hi z@y.io"},
            ]
        }
    ]
    out_chat, chat_report = scrub_pii(chat, CHAT, FakeEmailDetector())
    assert [m["content"] for m in out_chat[0]["messages"]] == ["I am [EMAIL]", "hi [EMAIL]"]
    assert chat_report.findings == 2

    text_out, _ = scrub_pii([{"text": "q@r.st"}], SchemaKind.TEXT, FakeEmailDetector())
    assert text_out == [{"text": "[EMAIL]"}]


def test_report_to_dict_is_json_ready() -> None:
    _, report = filter_length([{"text": "a b"}], SchemaKind.TEXT, lambda s: len(s.split()), 1, 1)
    assert report.to_dict() == {
        "name": "filter_length",
        "params": {"min_tokens": 1, "max_tokens": 1},
        "rows_in": 1,
        "rows_out": 0,
        "removed": {"too_short": 0, "too_long": 1},
        "rows_modified": 0,
        "findings": 0,
    }
