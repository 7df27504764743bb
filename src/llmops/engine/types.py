"""Typed messages of the engine and the ``Backend`` contract every engine implementation meets.

The serving layer talks to any backend (the in-process ``transformers`` engine, a remote
OpenAI-compatible server, a supervised vLLM replica) only through ``Backend``. These types carry no
HTTP, key or tenant concepts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "abort", "error"]


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. ``temperature == 0`` is greedy; ``top_k == 0`` disables top-k."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    """One generation. Exactly one of ``prompt``, ``prompt_token_ids`` or ``messages`` is set.

    ``adapter`` names a LoRA adapter loaded on the backend (None = the base model). ``deadline`` is
    a ``time.monotonic()`` instant after which the request is aborted with finish reason "abort".
    """

    request_id: str
    sampling: SamplingParams = field(default_factory=SamplingParams)
    prompt: str | None = None
    prompt_token_ids: tuple[int, ...] | None = None
    messages: tuple[ChatMessage, ...] | None = None
    adapter: str | None = None
    deadline: float | None = None


@dataclass(frozen=True)
class TopLogprob:
    token_id: int
    token: str
    logprob: float


@dataclass(frozen=True)
class TokenEvent:
    """One step of one request's output. The last event has ``finish_reason`` set.

    ``text`` is the detokenised delta since the previous event (may be empty while a multi-byte
    character is incomplete); counts are cumulative.
    """

    request_id: str
    token_id: int | None
    text: str
    prompt_tokens: int
    completion_tokens: int
    logprob: float | None = None
    top_logprobs: tuple[TopLogprob, ...] = ()
    finish_reason: FinishReason | None = None
    error: str | None = None
    cached_prompt_tokens: int = 0


@dataclass(frozen=True)
class EngineStats:
    """A snapshot for monitoring."""

    waiting: int = 0
    running: int = 0
    kv_blocks_total: int = 0
    kv_blocks_used: int = 0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    last_batch_size: int = 0
    steps: int = 0
    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0
    preemptions_total: int = 0
    # Speculative decoding (zero without a draft model): sequence-steps that verified drafts,
    # drafts proposed, drafts the target kept, and tokens those steps emitted (kept + 1 each).
    spec_verifications_total: int = 0
    spec_proposed_tokens_total: int = 0
    spec_accepted_tokens_total: int = 0
    spec_emitted_tokens_total: int = 0


@dataclass(frozen=True)
class HealthStatus:
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """What a backend serves: its id, context length and loaded adapters."""

    model_id: str
    max_model_len: int
    adapters: tuple[str, ...] = ()
    # generation (a decoder), or an encoder's task: classification, embedding
    task: str = "generation"
    architecture: str | None = None

    @property
    def generates(self) -> bool:
        return self.task == "generation"


@dataclass(frozen=True)
class Classification:
    """One text's label and the probability of every label (by name), from an encoder classifier."""

    label: str
    scores: dict[str, float]
    prompt_tokens: int


class Backend(ABC):
    """The engine contract.

    ``generate`` yields ``TokenEvent``s for one request until one with ``finish_reason``; it raises
    ``llmops.errors.InvalidInput`` for a request that can never run (prompt longer than the context,
    unknown adapter) before allocating anything, and ``llmops.errors.Overloaded`` when admission
    control refuses it. An exception while stepping one request ends that request with
    ``finish_reason="error"``; other requests go on. ``abort`` frees a request's resources at once.
    """

    @abstractmethod
    def info(self) -> ModelInfo: ...

    @abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]: ...

    @abstractmethod
    async def abort(self, request_id: str) -> None: ...

    @abstractmethod
    async def health(self) -> HealthStatus: ...

    @abstractmethod
    def stats(self) -> EngineStats: ...

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """Mean-pooled last hidden states; backends without embeddings raise InvalidInput."""
        from llmops.errors import InvalidInput

        raise InvalidInput("this backend does not serve embeddings", param="model")

    async def classify(self, texts: list[str]) -> list[Classification]:
        """Labels of ``texts``; backends without a classification head raise InvalidInput."""
        from llmops.errors import InvalidInput

        info = self.info()
        raise InvalidInput(
            f"model {info.model_id!r} is a {info.architecture or 'generative'} {info.task} model without a "
            "classification head: /v1/classify needs an encoder classifier version (kind encoder, task "
            "classification)",
            param="model",
        )

    def count_tokens(self, text: str) -> int | None:
        """Token count of ``text`` for this model, or None when the backend cannot tell."""
        return None

    async def start(self) -> None:
        """Start background work (the step loop); idempotent."""
        return None

    async def shutdown(self) -> None:
        """Stop background work and release resources."""
        return None
