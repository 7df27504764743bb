"""The OpenAI wire format, both ways: request bodies from ``GenerationRequest``, stream chunks back.

Pure functions over JSON-shaped data (no HTTP), so the remote backend stays about transport.
Parameters OpenAI itself does not know (top_k, repetition_penalty, ignore_eos, stop_token_ids) are
sent only when set, as vLLM and other OpenAI-compatible servers accept them as extras.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llmops.engine.types import FinishReason, GenerationRequest, SamplingParams, TopLogprob
from llmops.errors import InvalidInput, LLMOpsError, Overloaded, RateLimited, UpstreamError

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "abort": "abort",
    "error": "error",
}


@dataclass(frozen=True)
class ChunkDelta:
    """What one streamed chunk carries for choice 0."""

    text: str = ""
    finish_reason: FinishReason | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_prompt_tokens: int | None = None
    logprob: float | None = None
    top_logprobs: tuple[TopLogprob, ...] = ()
    has_choice: bool = False


def endpoint(request: GenerationRequest) -> str:
    return "/v1/chat/completions" if request.messages is not None else "/v1/completions"


def request_body(request: GenerationRequest, model: str) -> dict[str, Any]:
    """The JSON body of a streaming completion or chat completion for ``request``."""
    sampling = request.sampling
    body: dict[str, Any] = {
        "model": request.adapter or model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
    }
    if request.messages is not None:
        body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        if sampling.logprobs or sampling.top_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = sampling.top_logprobs
    else:
        given = request.prompt if request.prompt is not None else request.prompt_token_ids
        if given is None:
            raise InvalidInput("set exactly one of prompt, prompt_token_ids or messages", param="prompt")
        body["prompt"] = given if isinstance(given, str) else list(given)
        if sampling.logprobs or sampling.top_logprobs:
            # The completions API's logprobs is the number of alternatives (0 = only the chosen one).
            body["logprobs"] = sampling.top_logprobs
    body.update(_optional_params(sampling))
    return body


def _optional_params(sampling: SamplingParams) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if sampling.presence_penalty:
        extra["presence_penalty"] = sampling.presence_penalty
    if sampling.frequency_penalty:
        extra["frequency_penalty"] = sampling.frequency_penalty
    if sampling.seed is not None:
        extra["seed"] = sampling.seed
    if sampling.stop:
        extra["stop"] = list(sampling.stop)
    if sampling.top_k:
        extra["top_k"] = sampling.top_k
    if sampling.repetition_penalty != 1.0:
        extra["repetition_penalty"] = sampling.repetition_penalty
    if sampling.ignore_eos:
        extra["ignore_eos"] = True
    if sampling.stop_token_ids:
        extra["stop_token_ids"] = list(sampling.stop_token_ids)
    return extra


def parse_sse_line(line: str) -> dict[str, Any] | None:
    """The JSON of one ``data:`` line; None for other lines and for ``[DONE]``."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return None
    try:
        parsed = json.loads(data)
    except json.JSONDecodeError as exc:
        raise UpstreamError("the upstream sent a stream chunk that is not JSON") from exc
    if not isinstance(parsed, dict):
        raise UpstreamError("the upstream sent a stream chunk that is not an object")
    if "error" in parsed:
        raise UpstreamError(f"the upstream failed mid-stream: {_error_message(parsed)}")
    return parsed


def parse_chunk(chunk: dict[str, Any]) -> ChunkDelta:
    """Text, finish reason, usage and logprobs of a completion or chat-completion chunk."""
    usage = chunk.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    choices = chunk.get("choices") or []
    fields: dict[str, Any] = {
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "cached_prompt_tokens": details.get("cached_tokens"),
    }
    if not choices:
        return ChunkDelta(**fields)
    choice = choices[0]
    delta = choice.get("delta")
    text = (delta or {}).get("content") if delta is not None else choice.get("text")
    reason = choice.get("finish_reason")
    fields.update(_logprobs(choice.get("logprobs")))
    return ChunkDelta(
        text=text or "",
        finish_reason=_FINISH_REASONS.get(reason, "stop") if reason else None,
        has_choice=True,
        **fields,
    )


def _logprobs(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {}
    if isinstance(raw.get("content"), list) and raw["content"]:  # chat format
        entry = raw["content"][0]
        top = tuple(TopLogprob(-1, t["token"], float(t["logprob"])) for t in entry.get("top_logprobs") or [])
        return {"logprob": float(entry["logprob"]), "top_logprobs": top}
    token_logprobs = raw.get("token_logprobs") or []
    if token_logprobs and token_logprobs[0] is not None:  # completions format
        alternatives = (raw.get("top_logprobs") or [None])[0] or {}
        top = tuple(TopLogprob(-1, token, float(lp)) for token, lp in alternatives.items())
        return {"logprob": float(token_logprobs[0]), "top_logprobs": top}
    return {}


def error_from_response(status: int, body: bytes, retry_after: str | None) -> LLMOpsError:
    """Our error for an upstream HTTP error: 4xx keep their meaning, the rest are upstream errors."""
    try:
        parsed = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        parsed = {}
    message = _error_message(parsed) if isinstance(parsed, dict) else ""
    message = message or f"the upstream answered HTTP {status}"
    seconds = _seconds(retry_after)
    if status == 429:
        return RateLimited(message, retry_after=seconds)
    if status == 503:
        return Overloaded(message, retry_after=seconds)
    if 400 <= status < 500 and status not in (401, 403, 407, 408):
        param = parsed.get("error", {}).get("param") if isinstance(parsed.get("error"), dict) else None
        return InvalidInput(message, param=param)
    return UpstreamError(f"upstream error (HTTP {status}): {message}")


def _error_message(parsed: dict[str, Any]) -> str:
    error = parsed.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or "")
    if isinstance(error, str):
        return error
    return str(parsed.get("message") or parsed.get("detail") or "")


def _seconds(header: str | None) -> float | None:
    try:
        return float(header) if header is not None else None
    except ValueError:
        return None
