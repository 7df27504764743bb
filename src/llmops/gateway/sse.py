"""Server-sent events as the gateway relays them: split into events, read for accounting, error events.

Events are forwarded byte for byte; the gateway only reads them to count tokens and collect the
completion for the request log, and it drops the usage-only chunk it asked for when the client did
not ask for usage itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

DONE = b"data: [DONE]\n\n"


class EventSplitter:
    """Bytes in, complete SSE events (each ending in a blank line) out."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk.replace(b"\r\n", b"\n")
        events: list[bytes] = []
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                return events
            events.append(self._buffer[: end + 2])
            self._buffer = self._buffer[end + 2 :]

    @property
    def leftover(self) -> bytes:
        return self._buffer


def event_data(event: bytes) -> str | None:
    lines = [
        line[5:].lstrip() for line in event.decode("utf-8", "replace").split("\n") if line.startswith("data:")
    ]
    return "\n".join(lines) if lines else None


@dataclass
class StreamAccount:
    """What a stream carried: completion text, usage, whether it ended properly."""

    parts: list[str] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    content_chunks: int = 0
    done: bool = False
    upstream_error: str | None = None
    response_id: str | None = None

    @property
    def completion(self) -> str:
        return "".join(self.parts)

    def observe(self, event: bytes) -> bool:
        """Record one event; returns True when it is a usage-only chunk (choices empty)."""
        data = event_data(event)
        if data is None:
            return False
        if data.strip() == "[DONE]":
            self.done = True
            return False
        try:
            payload = json.loads(data)
        except json.JSONDecodeError:
            return False
        if not isinstance(payload, dict):
            return False
        return self._observe_payload(payload)

    def _observe_payload(self, payload: dict[str, Any]) -> bool:
        if self.response_id is None and isinstance(payload.get("id"), str):
            self.response_id = payload["id"]
        if "error" in payload:
            self.upstream_error = json.dumps(payload["error"])[:500]
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
            self.completion_tokens = usage.get("completion_tokens", self.completion_tokens)
        choices = payload.get("choices") or []
        for choice in choices:
            delta = choice.get("delta") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
            text = text if text is not None else choice.get("text")
            if text:
                self.parts.append(text)
                self.content_chunks += 1
        return not choices and isinstance(usage, dict)


def error_event(message: str, code: str, error_type: str = "upstream_error") -> bytes:
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def completion_of(payload: dict[str, Any]) -> str:
    """The text of a non-streamed chat or text completion (first choice)."""
    choices = payload.get("choices") or [{}]
    first = choices[0] if isinstance(choices[0], dict) else {}
    message = first.get("message")
    if isinstance(message, dict) and isinstance(message.get("content"), str):
        return str(message["content"])
    return str(first.get("text") or "")
