"""Turn a validated OpenAI request into the engine's ``GenerationRequest``s, one per choice.

A request with ``n`` choices (and, for text completions, several prompts) fans out into one backend
request per choice: ids ``{completion_id}-{index}`` and, when the client gave a seed, seeds
``seed + index`` (so choice 0 reproduces an ``n=1`` request with the same seed). When the client
sets no ``max_tokens``, the default is capped to the context left after the prompt (estimated for
chat, whose template the engine applies).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from llmops.engine.types import ChatMessage, GenerationRequest, ModelInfo, SamplingParams
from llmops.errors import InvalidInput
from llmops.serve.config import ServeConfig
from llmops.serve.protocol import INT64, ChatCompletionRequest, CompletionRequest, SamplingFields

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
CHAT_TEMPLATE_OVERHEAD_TOKENS = 8  # role markers and separators per message, an estimate
_INLINE_COUNT_CHARS = 32_768  # longer texts are counted on a worker thread

CountTokens = Callable[[str], int | None]


def check_limits(body: SamplingFields, config: ServeConfig, top_logprobs: int, prompts: int = 1) -> None:
    """Limits that depend on the server's configuration; raise InvalidInput naming the field."""
    n = body.choices_per_prompt
    if n > config.max_n:
        raise InvalidInput(f"n must be at most {config.max_n} on this server, got {n}", param="n")
    if top_logprobs > config.max_top_logprobs:
        param = "logprobs" if isinstance(body, CompletionRequest) else "top_logprobs"
        raise InvalidInput(
            f"{param} must be at most {config.max_top_logprobs} on this server, got {top_logprobs}",
            param=param,
        )
    if prompts > config.max_prompts_per_request:
        raise InvalidInput(
            f"at most {config.max_prompts_per_request} prompts per request, got {prompts}", param="prompt"
        )


def derive_seed(seed: int | None, index: int) -> int | None:
    """The seed of choice ``index``: ``seed + index`` wrapped into int64."""
    if seed is None:
        return None
    return (seed + index + INT64) % (2 * INT64) - INT64


def sampling_params(
    body: SamplingFields, max_tokens: int, *, logprobs: bool, top_logprobs: int, seed: int | None
) -> SamplingParams:
    top_k = body.top_k or 0
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=0 if top_k < 0 else top_k,
        repetition_penalty=body.repetition_penalty or 1.0,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        seed=seed,
        stop=body.stop,
        ignore_eos=bool(body.ignore_eos),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )


def deadline(config: ServeConfig) -> float | None:
    return None if config.request_timeout_s is None else time.monotonic() + config.request_timeout_s


async def count_tokens(count: CountTokens, text: str) -> int | None:
    """The backend's token count of ``text``; long texts are tokenised off the event loop."""
    if len(text) <= _INLINE_COUNT_CHARS:
        return count(text)
    return await asyncio.to_thread(count, text)


def default_max_tokens(default: int, info: ModelInfo, prompt_tokens: int | None) -> int:
    room = info.max_model_len - (prompt_tokens or 0)
    return max(1, min(default, room))


async def chat_requests(
    body: ChatCompletionRequest,
    completion_id: str,
    adapter: str | None,
    config: ServeConfig,
    info: ModelInfo,
    count: CountTokens,
) -> list[GenerationRequest]:
    messages = tuple(
        ChatMessage(role="system" if m.role == "developer" else m.role, content=m.content)
        for m in body.messages
    )
    max_tokens = body.requested_max_tokens
    if max_tokens is None:
        rendered = "\n".join(f"{m.role}\n{m.content}" for m in messages)
        counted = await count_tokens(count, rendered)
        estimate = None if counted is None else counted + CHAT_TEMPLATE_OVERHEAD_TOKENS * (len(messages) + 1)
        max_tokens = default_max_tokens(config.default_max_tokens, info, estimate)
    top = body.top_logprobs or 0
    until = deadline(config)
    return [
        GenerationRequest(
            request_id=f"{completion_id}-{i}",
            sampling=sampling_params(
                body,
                max_tokens,
                logprobs=bool(body.logprobs),
                top_logprobs=top,
                seed=derive_seed(body.seed, i),
            ),
            messages=messages,
            adapter=adapter,
            deadline=until,
        )
        for i in range(body.choices_per_prompt)
    ]


async def completion_requests(
    body: CompletionRequest,
    completion_id: str,
    adapter: str | None,
    config: ServeConfig,
    info: ModelInfo,
    count: CountTokens,
) -> list[GenerationRequest]:
    """Choices of prompt ``p`` are indices ``p * n .. p * n + n - 1``."""
    n = body.choices_per_prompt
    until = deadline(config)
    requests = []
    for p, prompt in enumerate(body.prompt):
        max_tokens = body.max_tokens
        if max_tokens is None:
            counted = len(prompt) if isinstance(prompt, tuple) else await count_tokens(count, prompt)
            max_tokens = default_max_tokens(COMPLETIONS_DEFAULT_MAX_TOKENS, info, counted)
        for j in range(n):
            index = p * n + j
            params = sampling_params(
                body,
                max_tokens,
                logprobs=body.logprobs is not None,
                top_logprobs=body.logprobs or 0,
                seed=derive_seed(body.seed, j),
            )
            requests.append(
                GenerationRequest(
                    request_id=f"{completion_id}-{index}",
                    sampling=params,
                    prompt=prompt if isinstance(prompt, str) else None,
                    prompt_token_ids=prompt if isinstance(prompt, tuple) else None,
                    adapter=adapter,
                    deadline=until,
                )
            )
    return requests
