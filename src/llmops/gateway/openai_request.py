"""Reading an OpenAI-style request body: the fields the gateway needs, and no URLs (no SSRF).

A request may not carry a URL or a field that names where to send it (``api_base``, ``base_url``,
``*_url``, ...) anywhere in its body: the gateway decides where requests go, never the caller.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from llmops.errors import InvalidInput
from llmops.security.json_input import loads_json

Endpoint = Literal["chat", "completions", "embeddings", "classify"]
PATHS: dict[str, str] = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
    "classify": "/v1/classify",
}
READING: frozenset[str] = frozenset({"embeddings", "classify"})  # answered in one pass, never streamed
URL_FIELDS = frozenset(
    {"api_base", "base_url", "api_url", "endpoint", "webhook", "callback", "proxy", "host", "api_key"}
)
_URL_VALUE_RE = re.compile(r"^\s*[a-zA-Z][a-zA-Z0-9+.-]*://")
COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))  # json.dumps builds an encoder per call


@dataclass(frozen=True)
class ParsedRequest:
    endpoint: Endpoint
    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    user: str | None
    prompt_text: str

    @property
    def generates(self) -> bool:
        """Whether the answer is generated text (chat, completions), not vectors or labels
        (embeddings, classify)."""
        return self.endpoint not in READING


def _is_url_field(name: str) -> bool:
    lowered = name.lower()
    return lowered in URL_FIELDS or lowered.endswith("url") or lowered.endswith("_uri")


def forbid_url_fields(value: Any, path: str = "") -> None:
    """Raise ``InvalidInput`` naming the first URL-carrying field found anywhere in ``value`` (only
    objects and arrays are descended into; a field's path is spelled out when needed)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if _is_url_field(str(key)):
                where = f"{path}.{key}" if path else str(key)
                raise InvalidInput(
                    f"field {where!r} is not accepted: the gateway never sends requests or fetches content "
                    "at a URL given by the caller; remove it",
                    param=where,
                    code="url_not_allowed",
                )
            if isinstance(item, (dict, list)):
                forbid_url_fields(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, (dict, list)):
                forbid_url_fields(item, f"{path}[{index}]")


def _forbid_top_level_urls(body: dict[str, Any]) -> None:
    for key, item in body.items():
        if isinstance(item, str) and _URL_VALUE_RE.match(item):
            raise InvalidInput(
                f"field {key!r} holds a URL; the gateway does not accept URLs in request fields",
                param=key,
                code="url_not_allowed",
            )


def _input_text(body: dict[str, Any]) -> str:
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts:
        raise InvalidInput("`input` must be a non-empty string or list of strings", param="input")
    if not all(isinstance(t, str) for t in texts):
        return json.dumps(texts)  # token ids: the replica checks them
    return "\n".join(texts)


def _prompt_text(endpoint: Endpoint, body: dict[str, Any]) -> str:
    if endpoint in READING:
        return _input_text(body)
    if endpoint == "completions":
        prompt = body.get("prompt", "")
        return prompt if isinstance(prompt, str) else json.dumps(prompt)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("`messages` must be a non-empty list of {role, content}", param="messages")
    parts: list[str] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return "\n".join(parts)


def _max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 5.0 is an integer to JSON Schema, and to the replica
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidInput("`max_tokens` must be a positive integer", param="max_tokens")
    return value


def _check_stream_options(options: Any, *, stream: bool) -> None:
    """What the replica checks, here too: the gateway drops ``stream_options`` from unstreamed calls."""
    if not isinstance(options, dict):
        raise InvalidInput(
            '`stream_options` must be an object like {"include_usage": true}', param="stream_options"
        )
    if not stream:
        raise InvalidInput("`stream_options` is only allowed with stream: true", param="stream_options")


def parse_request(raw: bytes, endpoint: Endpoint) -> ParsedRequest:
    body = loads_json(raw)
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInput("`model` is required: the name of a deployment (GET /v1/models)", param="model")
    forbid_url_fields(body)
    _forbid_top_level_urls(body)
    user = body.get("user")
    options = body.get("stream_options")
    reading = endpoint in READING
    if reading and body.get("stream"):
        raise InvalidInput(f"{endpoint} answers are not streamed; remove `stream`", param="stream")
    if not reading and body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise InvalidInput("`stream` must be true or false", param="stream")
    if not reading and options is not None:
        _check_stream_options(options, stream=bool(body.get("stream")))
    return ParsedRequest(
        endpoint=endpoint,
        body=body,
        model=model,
        stream=bool(body.get("stream")),
        include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
        max_tokens=_max_tokens(body),
        user=user if isinstance(user, str) and user else None,
        prompt_text=_prompt_text(endpoint, body),
    )


def upstream_body(parsed: ParsedRequest, upstream_model: str, *, stream: bool | None = None) -> bytes:
    """The body sent to a replica: its model name, and usage requested on streams for accounting."""
    body = {**parsed.body, "model": upstream_model}
    if not parsed.generates:
        return COMPACT_JSON.encode(body).encode()
    streaming = parsed.stream if stream is None else stream
    body["stream"] = streaming
    if streaming:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        body.pop("stream_options", None)
    return COMPACT_JSON.encode(body).encode()
