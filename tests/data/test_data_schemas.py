"""Row schemas: validation errors name source, line and field; kind detection; row text."""

from __future__ import annotations

import pytest

from llmops.data.schemas import SchemaKind, detect_kind, map_text_fields, parse_kind, row_text, validate_row
from llmops.errors import InvalidInput

CHAT_ROW = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]
}


def test_valid_rows_pass_and_keep_metadata() -> None:
    row = {"prompt": "2+2=", "completion": "4", "id": "x1"}
    out = validate_row(row, SchemaKind.PROMPT_COMPLETION, source="a.jsonl", line=1)
    assert out == row
    assert out is not row
    assert validate_row({"text": "hello"}, "text", source="a.jsonl", line=1) == {"text": "hello"}
    assert validate_row(CHAT_ROW, SchemaKind.CHAT, source="a.jsonl", line=1) == CHAT_ROW


@pytest.mark.parametrize(
    ("row", "kind", "field"),
    [
        ({"prompt": "p"}, SchemaKind.PROMPT_COMPLETION, "completion"),
        ({"prompt": 3, "completion": "c"}, SchemaKind.PROMPT_COMPLETION, "prompt"),
        ({"prompt": "p", "completion": "   "}, SchemaKind.PROMPT_COMPLETION, "completion"),
        ({"body": "x"}, SchemaKind.TEXT, "text"),
        ({"messages": []}, SchemaKind.CHAT, "messages"),
        ({"messages": [{"role": "bot", "content": "x"}]}, SchemaKind.CHAT, "messages[0].role"),
        ({"messages": [{"role": "user", "content": None}]}, SchemaKind.CHAT, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "only a question"}]}, SchemaKind.CHAT, "messages"),
    ],
)
def test_errors_name_source_line_and_field(row: dict[str, object], kind: SchemaKind, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_row(row, kind, source="train.jsonl", line=7)
    assert info.value.param == field
    assert info.value.message.startswith(f"train.jsonl, line 7: field '{field}'")
    assert info.value.status_code == 400


def test_bad_role_error_lists_valid_roles() -> None:
    with pytest.raises(InvalidInput, match="system, user, assistant"):
        validate_row({"messages": [{"role": "bot", "content": "x"}]}, "chat", source="c.jsonl", line=2)


def test_non_object_row_and_row_unit() -> None:
    with pytest.raises(InvalidInput, match=r"^d\.parquet, row 4: expected an object"):
        validate_row(["a"], "text", source="d.parquet", line=4, unit="row")


def test_unknown_kind_lists_valid_ones() -> None:
    with pytest.raises(InvalidInput, match="text, prompt_completion, chat") as info:
        parse_kind("qa")
    assert info.value.param == "kind"


def test_detect_kind_from_first_row() -> None:
    assert detect_kind([{"text": "a"}, {"prompt": "p", "completion": "c"}]) is SchemaKind.TEXT
    assert detect_kind([{"prompt": "p", "completion": "c", "text": "t"}]) is SchemaKind.PROMPT_COMPLETION
    assert detect_kind([CHAT_ROW]) is SchemaKind.CHAT
    with pytest.raises(InvalidInput, match="cannot tell the schema from keys"):
        detect_kind([{"question": "q"}], source="x.csv")
    with pytest.raises(InvalidInput, match="no rows"):
        detect_kind([])


def test_row_text_and_map_text_fields() -> None:
    assert row_text({"prompt": "a", "completion": "b"}, SchemaKind.PROMPT_COMPLETION) == "a\nb"
    assert row_text(CHAT_ROW, SchemaKind.CHAT) == "system: Be brief.\nuser: Hi\nassistant: Hello"
    upper = map_text_fields(CHAT_ROW, SchemaKind.CHAT, str.upper)
    assert [m["role"] for m in upper["messages"]] == ["system", "user", "assistant"]
    assert [m["content"] for m in upper["messages"]] == ["BE BRIEF.", "HI", "HELLO"]
    assert CHAT_ROW["messages"][1]["content"] == "Hi"  # the input is not changed
    mapped = map_text_fields(
        {"prompt": "a", "completion": "b", "id": "k"}, SchemaKind.PROMPT_COMPLETION, str.upper
    )
    assert mapped == {"prompt": "A", "completion": "B", "id": "k"}
