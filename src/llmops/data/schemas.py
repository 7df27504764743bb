"""Row schemas of datasets: ``text``, ``prompt_completion`` and ``chat`` (OpenAI message shape).

This module owns what a valid row of each kind looks like, how the kind of a file is inferred from
its first row, and how a row is read as text (for dedup, length filters and PII scrubbing). A row is
a plain ``dict``; extra keys (metadata such as ``id`` or ``task``) are kept as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any

from llmops.errors import InvalidInput

Row = dict[str, Any]

CHAT_ROLES: tuple[str, ...] = ("system", "user", "assistant")


class SchemaKind(StrEnum):
    """The three row shapes a dataset can have."""

    TEXT = "text"
    PROMPT_COMPLETION = "prompt_completion"
    CHAT = "chat"


_EXAMPLES: dict[SchemaKind, str] = {
    SchemaKind.TEXT: '{"text": "..."}',
    SchemaKind.PROMPT_COMPLETION: '{"prompt": "...", "completion": "..."}',
    SchemaKind.CHAT: (
        '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}'
    ),
}


def parse_kind(value: str | SchemaKind) -> SchemaKind:
    """Turn a user-given schema name into a ``SchemaKind``; unknown names raise ``InvalidInput``."""
    try:
        return SchemaKind(value)
    except ValueError:
        valid = ", ".join(k.value for k in SchemaKind)
        raise InvalidInput(f"unknown schema kind {value!r}; use one of: {valid}", param="kind") from None


def _row_error(where: str, field: str, problem: str, fix: str) -> InvalidInput:
    return InvalidInput(f"{where}: field '{field}' {problem}; {fix}", param=field)


def _require_str(row: Mapping[str, Any], field: str, where: str, kind: SchemaKind, *, nonempty: bool) -> None:
    fix = f"each {kind.value} row looks like {_EXAMPLES[kind]}"
    if field not in row:
        raise _row_error(where, field, "is missing", fix)
    value = row[field]
    if not isinstance(value, str):
        raise _row_error(where, field, f"must be a string, got {type(value).__name__}", fix)
    if nonempty and not value.strip():
        raise _row_error(where, field, "is empty", f"give it some text or drop the row ({fix})")


def _validate_message(message: Any, index: int, where: str) -> None:
    field = f"messages[{index}]"
    fix = 'each message looks like {"role": "user", "content": "..."}'
    if not isinstance(message, Mapping):
        raise _row_error(where, field, f"must be an object, got {type(message).__name__}", fix)
    role = message.get("role")
    if role not in CHAT_ROLES:
        raise _row_error(where, f"{field}.role", f"is {role!r}", f"use one of: {', '.join(CHAT_ROLES)}")
    if not isinstance(message.get("content"), str):
        got = type(message.get("content")).__name__
        raise _row_error(where, f"{field}.content", f"must be a string, got {got}", fix)


def _validate_messages(row: Mapping[str, Any], where: str) -> None:
    fix = f"each chat row looks like {_EXAMPLES[SchemaKind.CHAT]}"
    if "messages" not in row:
        raise _row_error(where, "messages", "is missing", fix)
    messages = row["messages"]
    if not isinstance(messages, list) or not messages:
        raise _row_error(where, "messages", "must be a non-empty list of messages", fix)
    for index, message in enumerate(messages):
        _validate_message(message, index, where)
    if not any(m["role"] == "assistant" for m in messages):
        raise _row_error(where, "messages", "has no assistant message", "add the assistant's answer to learn")


def validate_row(row: Any, kind: SchemaKind | str, *, source: str, line: int, unit: str = "line") -> Row:
    """Check one row against ``kind`` and return it as a new dict.

    ``source`` (a file name) and ``line`` say where the row came from; ``unit`` is ``"line"`` for
    text files and ``"row"`` for Parquet. Errors are ``InvalidInput`` naming source, line and field.
    """
    kind = parse_kind(kind)
    where = f"{source}, {unit} {line}"
    if not isinstance(row, Mapping):
        raise InvalidInput(
            f"{where}: expected an object like {_EXAMPLES[kind]}, got {type(row).__name__}", param="row"
        )
    if kind is SchemaKind.TEXT:
        _require_str(row, "text", where, kind, nonempty=True)
    elif kind is SchemaKind.PROMPT_COMPLETION:
        _require_str(row, "prompt", where, kind, nonempty=False)
        _require_str(row, "completion", where, kind, nonempty=True)
    else:
        _validate_messages(row, where)
    return dict(row)


def kind_of_keys(keys: Iterable[str]) -> SchemaKind | None:
    """The schema whose required keys are all in ``keys`` (chat first), or ``None``."""
    present = set(keys)
    if "messages" in present:
        return SchemaKind.CHAT
    if {"prompt", "completion"} <= present:
        return SchemaKind.PROMPT_COMPLETION
    if "text" in present:
        return SchemaKind.TEXT
    return None


def detect_kind(rows: Iterable[Any], *, source: str = "rows") -> SchemaKind:
    """Infer the schema from the first row's keys; raise ``InvalidInput`` if none fits."""
    first = next(iter(rows), None)
    if first is None:
        raise InvalidInput(
            f"{source}: no rows to infer the schema from; add rows or name the kind", param="kind"
        )
    keys = first.keys() if isinstance(first, Mapping) else ()
    kind = kind_of_keys(keys)
    if kind is None:
        shapes = "; ".join(f"{k.value}: {example}" for k, example in _EXAMPLES.items())
        raise InvalidInput(
            f"{source}: cannot tell the schema from keys {sorted(keys)}; rows must look like one of {shapes}",
            param="kind",
        )
    return kind


def row_text(row: Mapping[str, Any], kind: SchemaKind) -> str:
    """The text of a row as one string: what dedup, length filters and statistics look at."""
    if kind is SchemaKind.TEXT:
        return str(row["text"])
    if kind is SchemaKind.PROMPT_COMPLETION:
        return f"{row['prompt']}\n{row['completion']}"
    return "\n".join(f"{m['role']}: {m['content']}" for m in row["messages"])


def map_text_fields(row: Mapping[str, Any], kind: SchemaKind, transform: Callable[[str], str]) -> Row:
    """A copy of ``row`` with ``transform`` applied to every text field (not to roles or metadata)."""
    out = dict(row)
    if kind is SchemaKind.TEXT:
        out["text"] = transform(row["text"])
    elif kind is SchemaKind.PROMPT_COMPLETION:
        out["prompt"] = transform(row["prompt"])
        out["completion"] = transform(row["completion"])
    else:
        out["messages"] = [{**m, "content": transform(m["content"])} for m in row["messages"]]
    return out
