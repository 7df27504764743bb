"""Request validation: everything that can make a request impossible, checked before allocation.

Each failure is an ``InvalidInput`` naming the field and the fix. Nothing here allocates in
proportion to a requested value (max_tokens, top_logprobs): bad values are refused by comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llmops.engine.types import GenerationRequest, SamplingParams
from llmops.errors import InvalidInput
from llmops.train.input_format import PromptEncoder

MAX_STOP_STRINGS = 16
MAX_STOP_STRING_CHARS = 256


@dataclass(frozen=True)
class RequestLimits:
    """What the serving engine can take."""

    max_model_len: int
    vocab_size: int
    max_top_logprobs: int
    adapters: tuple[str, ...] = ()


def prompt_token_ids(request: GenerationRequest, encoder: PromptEncoder) -> tuple[list[int], str]:
    """The prompt as token ids and the request field it came from (for error messages).

    Text and conversations are encoded by the model's ``PromptEncoder`` (its recorded input format),
    exactly as training and evaluation encoded them; token ids are taken as given.
    """
    given = [
        name for name in ("prompt", "prompt_token_ids", "messages") if getattr(request, name) is not None
    ]
    if len(given) != 1:
        raise InvalidInput("set exactly one of prompt, prompt_token_ids or messages", param="prompt")
    if request.prompt_token_ids is not None:
        return list(request.prompt_token_ids), "prompt"
    if request.prompt is not None:
        return encoder.encode_prompt(request.prompt), "prompt"
    assert request.messages is not None
    return encoder.encode_chat(request.messages), "messages"


def validate_request(
    request: GenerationRequest, prompt_ids: list[int], source: str, limits: RequestLimits
) -> None:
    """Raise ``InvalidInput`` for a request that can never run on this engine."""
    if not request.request_id:
        raise InvalidInput("request_id must not be empty", param="request_id")
    if request.adapter is not None and request.adapter not in limits.adapters:
        known = ", ".join(limits.adapters) or "none"
        raise InvalidInput(f"unknown adapter {request.adapter!r}; loaded adapters: {known}", param="model")
    if not prompt_ids:
        raise InvalidInput("the prompt is empty", param=source)
    if min(prompt_ids) < 0 or max(prompt_ids) >= limits.vocab_size:
        raise InvalidInput(f"prompt token ids must be in [0, {limits.vocab_size})", param=source)
    if len(prompt_ids) >= limits.max_model_len:
        raise InvalidInput(
            f"the prompt has {len(prompt_ids)} tokens; this model's context is {limits.max_model_len} "
            "tokens, prompt and output together: shorten the prompt",
            param=source,
        )
    validate_sampling(request.sampling, limits)
    room = limits.max_model_len - len(prompt_ids)
    if request.sampling.max_tokens > room:
        raise InvalidInput(
            f"max_tokens is {request.sampling.max_tokens} but only {room} tokens fit after the "
            f"{len(prompt_ids)}-token prompt in the {limits.max_model_len}-token context; lower max_tokens",
            param="max_tokens",
        )


def validate_sampling(params: SamplingParams, limits: RequestLimits) -> None:
    """Range checks of the sampling parameters."""
    _check(params.max_tokens >= 1, "max_tokens must be at least 1", "max_tokens")
    _check(_finite(params.temperature) and params.temperature >= 0, "temperature must be >= 0", "temperature")
    _check(_finite(params.top_p) and 0 < params.top_p <= 1, "top_p must be in (0, 1]", "top_p")
    _check(params.top_k >= 0, "top_k must be >= 0 (0 disables it)", "top_k")
    _check(
        _finite(params.repetition_penalty) and params.repetition_penalty > 0,
        "repetition_penalty must be > 0",
        "repetition_penalty",
    )
    for name in ("presence_penalty", "frequency_penalty"):
        value = getattr(params, name)
        _check(_finite(value) and -2 <= value <= 2, f"{name} must be in [-2, 2]", name)
    _check(
        0 <= params.top_logprobs <= limits.max_top_logprobs,
        f"top_logprobs must be in [0, {limits.max_top_logprobs}]",
        "top_logprobs",
    )
    _check(len(params.stop) <= MAX_STOP_STRINGS, f"at most {MAX_STOP_STRINGS} stop strings", "stop")
    _check(
        all(len(stop) <= MAX_STOP_STRING_CHARS for stop in params.stop),
        f"stop strings must be at most {MAX_STOP_STRING_CHARS} characters",
        "stop",
    )
    _check(
        all(0 <= token < limits.vocab_size for token in params.stop_token_ids),
        f"stop_token_ids must be in [0, {limits.vocab_size})",
        "stop_token_ids",
    )


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _check(ok: bool, message: str, param: str) -> None:
    if not ok:
        raise InvalidInput(message, param=param)
