"""Dataset rows: read a JSONL file and check each row against the recipe's schema.

Schemas: ``text`` rows have ``text``; ``prompt_completion`` rows have ``prompt`` and ``completion``;
``chat`` rows have ``messages``, a list of ``{role, content}`` with at least one assistant turn.
Other keys (ids, labels, provenance) are ignored. A bad row is an ``InvalidInput`` naming the file
and the line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.errors import InvalidInput
from llmops.train.recipe import RowSchema

CHAT_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class TextRow:
    text: str


@dataclass(frozen=True)
class PromptCompletionRow:
    prompt: str
    completion: str


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True)
class ChatRow:
    messages: tuple[ChatMessage, ...]


Row = TextRow | PromptCompletionRow | ChatRow


def read_rows(path: str | Path, schema: RowSchema) -> list[Row]:
    """All rows of a JSONL file, validated; blank lines are skipped; an empty file is an error."""
    path = Path(path)
    rows: list[Row] = []
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    rows.append(_parse_line(line, schema, f"{path.name} line {number}"))
    except OSError as exc:
        raise InvalidInput(f"cannot read dataset {path.name}: {exc.strerror}", param="data") from None
    if not rows:
        raise InvalidInput(f"dataset {path.name} has no rows", param="data")
    return rows


def _parse_line(line: str, schema: RowSchema, where: str) -> Row:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{where}: not valid JSON ({exc.msg})", param="data") from None
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: a row must be a JSON object", param="data")
    if schema == "text":
        return TextRow(text=_string(raw, "text", where))
    if schema == "prompt_completion":
        return PromptCompletionRow(
            prompt=_string(raw, "prompt", where), completion=_string(raw, "completion", where)
        )
    return ChatRow(messages=_messages(raw, where))


def _string(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{where}: field '{key}' must be a non-empty string (schema needs it)", param=key)
    return value


def _messages(raw: dict[str, Any], where: str) -> tuple[ChatMessage, ...]:
    value = raw.get("messages")
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"{where}: field 'messages' must be a non-empty list", param="messages")
    messages = []
    for item in value:
        if (
            not isinstance(item, dict)
            or item.get("role") not in CHAT_ROLES
            or not isinstance(item.get("content"), str)
        ):
            raise InvalidInput(
                f"{where}: each message needs role in {list(CHAT_ROLES)} and string content", param="messages"
            )
        messages.append(ChatMessage(role=item["role"], content=item["content"]))
    if not any(m.role == "assistant" for m in messages):
        raise InvalidInput(f"{where}: a chat row needs at least one assistant message", param="messages")
    return tuple(messages)


def row_texts(rows: Sequence[Row]) -> Iterator[str]:
    """The raw texts of rows, for training a tokenizer on them."""
    for row in rows:
        if isinstance(row, TextRow):
            yield row.text
        elif isinstance(row, PromptCompletionRow):
            yield row.prompt
            yield row.completion
        else:
            yield from (m.content for m in row.messages)
