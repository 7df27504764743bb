"""Readers: JSONL, CSV and Parquet in, JSONL and Parquet out, with errors naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops.data.readers import read_rows, write_jsonl, write_parquet
from llmops.data.schemas import SchemaKind
from llmops.errors import InvalidInput, NotFound

PC_ROWS = [
    {"prompt": "Say hi", "completion": "hi"},
    {"prompt": 'Comma, and "quotes"', "completion": "line one\nline two"},
    {"prompt": "Ünïcödé ✓", "completion": "ok"},
]
CHAT_ROWS = [
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
    {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
]


def test_jsonl_round_trip_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "pc.jsonl"
    assert write_jsonl(PC_ROWS, path) == 3
    path.write_text(path.read_text(encoding="utf-8").replace("\n", "\n\n", 1), encoding="utf-8")
    result = read_rows(path)
    assert result.kind is SchemaKind.PROMPT_COMPLETION
    assert result.rows == PC_ROWS
    assert result.lines == [1, 3, 4]  # the blank line 2 is skipped but counted
    assert result.source == "pc.jsonl"
    assert result.skipped == 0


def test_jsonl_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"\n{"text": "c"}\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"^bad\.jsonl, line 2: malformed JSON"):
        read_rows(path)
    result = read_rows(path, skip_invalid=True)
    assert [r["text"] for r in result.rows] == ["a", "c"]
    assert result.lines == [1, 3]
    assert result.skipped == 1
    assert result.skipped_reasons[0].startswith("bad.jsonl, line 2")


def test_jsonl_schema_errors_skip_or_raise(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    lines = [
        {"prompt": "p", "completion": "c"},
        {"prompt": "p2"},
        [1, 2],
        {"prompt": "p3", "completion": "c3"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        read_rows(path)
    assert info.value.message.startswith("mixed.jsonl, line 2: field 'completion' is missing")
    assert info.value.param == "completion"
    result = read_rows(path, skip_invalid=True)
    assert len(result.rows) == 2
    assert result.skipped == 2
    assert "line 3: expected a JSON object" in result.skipped_reasons[1]


def test_explicit_kind_overrides_detection(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_jsonl([{"text": "a", "prompt": "p"}], path)
    with pytest.raises(InvalidInput, match="field 'completion' is missing"):
        read_rows(path, kind="prompt_completion")
    assert read_rows(path).kind is SchemaKind.TEXT


def test_csv_prompt_completion_with_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "pc.csv"
    path.write_text(
        'prompt,completion\nSay hi,hi\n"Comma, and ""quotes""","line one\nline two"\nÜnïcödé ✓,ok\n',
        encoding="utf-8",
    )
    result = read_rows(path)
    assert result.kind is SchemaKind.PROMPT_COMPLETION
    assert result.rows == PC_ROWS
    assert result.lines == [2, 3, 5]  # a record spanning lines 3-4 starts on line 3


def test_csv_chat_messages_as_json_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "chat.csv"
    cells = [json.dumps(r["messages"]).replace('"', '""') for r in CHAT_ROWS]
    path.write_text("messages\n" + "".join(f'"{c}"\n' for c in cells) + "not json\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"^chat\.csv, line 4: field 'messages' is not a JSON list"):
        read_rows(path)
    result = read_rows(path, skip_invalid=True)
    assert result.kind is SchemaKind.CHAT
    assert result.rows == CHAT_ROWS
    assert result.skipped == 1


def test_csv_extra_fields_error(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("text\nfine\nnot,fine\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"^wide\.csv, line 3: more fields than the header"):
        read_rows(path)


def test_parquet_round_trip_chat_and_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "chat.parquet"
    assert write_parquet(CHAT_ROWS, path) == 2
    result = read_rows(path)
    assert result.kind is SchemaKind.CHAT
    assert result.rows == CHAT_ROWS
    assert result.lines == [1, 2]
    bad = tmp_path / "pc.parquet"
    write_parquet([{"prompt": "p", "completion": "c"}, {"prompt": "p", "completion": ""}], bad)
    with pytest.raises(InvalidInput, match=r"^pc\.parquet, row 2: field 'completion' is empty"):
        read_rows(bad)


def test_parquet_rejects_mixed_types(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot be stored as Parquet"):
        write_parquet([{"text": "a", "n": 1}, {"text": "b", "n": "x"}], tmp_path / "m.parquet")


def test_corrupt_parquet_is_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "junk.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(InvalidInput, match=r"^junk\.parquet: not a readable Parquet file"):
        read_rows(path)


def test_unknown_extension_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"unsupported file type '\.txt'; use one of: \.csv, \.jsonl"):
        read_rows(tmp_path / "data.txt")
    with pytest.raises(NotFound, match="does not exist"):
        read_rows(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="has no rows"):
        read_rows(empty)


def test_all_rows_invalid_raises_even_when_skipping(tmp_path: Path) -> None:
    path = tmp_path / "none.jsonl"
    path.write_text('{"text": ""}\n{"text": 5}\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"none of its 2 rows is valid; the first: none\.jsonl, line 1"):
        read_rows(path, skip_invalid=True)


def test_write_jsonl_keeps_unicode_and_creates_folders(tmp_path: Path) -> None:
    path = tmp_path / "out" / "rows.jsonl"
    write_jsonl(iter(PC_ROWS), path)
    assert "Ünïcödé ✓" in path.read_text(encoding="utf-8")
    assert [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()] == PC_ROWS
    assert not list(path.parent.glob(".*.tmp"))
