"""``ReplicaService``: what the handlers of one replica share (backend, names, limits, metrics).

Model names: clients ask for the served model name (the base model) or the name of an adapter the
backend has loaded (generation then runs with that adapter); anything else is a 404 that lists the
served names.

Tracing: when the service's ``Tracing`` is on, each generation of a request gets two child spans of
the request's span, built afterwards from the instants this layer sees on the backend's stream:
``queue_wait_and_prefill`` (generation submitted until its first completion token) and ``decode``
(first token until the finish event), with the generation id, token counts and finish reason. The
engine itself knows nothing of tracing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode, Tracer
from starlette.types import Receive

from llmops.engine.encoder_backend import cannot_generate
from llmops.engine.types import (
    Backend,
    Classification,
    EngineStats,
    GenerationRequest,
    HealthStatus,
    ModelInfo,
    TokenEvent,
)
from llmops.errors import NotFound
from llmops.monitor.tracing import Tracing
from llmops.serve.choices import ChoiceState, usage
from llmops.serve.config import ServeConfig
from llmops.serve.fanout import Fanout
from llmops.serve.metrics import ServeMetrics

DRAIN_TIMEOUT_S = 5.0
GENERATION_ID_ATTRIBUTE = "llmops.generation_id"  # one choice of a request (the request id is on the parent)


@dataclass
class ReplicaService:
    backend: Backend
    served_model_name: str
    config: ServeConfig
    metrics: ServeMetrics
    created: int = field(default_factory=lambda: int(time.time()))
    background: set[asyncio.Task[None]] = field(default_factory=set)
    tracing: Tracing = field(default_factory=Tracing.off)

    def model_names(self) -> list[str]:
        return [self.served_model_name, *self.backend.info().adapters]

    def adapter_for(self, model: str) -> str | None:
        """The adapter a request's ``model`` selects (None = the base); 404 for an unknown name."""
        if model == self.served_model_name:
            return self.config.default_adapter
        if model in self.backend.info().adapters:
            return model
        raise NotFound(
            f"model {model!r} is not served here; served models: {', '.join(self.model_names())}",
            param="model",
            code="model_not_found",
        )

    def require_generation(self) -> None:
        """Refuse (400, ``model_cannot_generate``) chat and completions on a model that only reads."""
        info = self.backend.info()
        if not info.generates:
            raise cannot_generate(info)

    def fanout(self, requests: Sequence[GenerationRequest], receive: Receive) -> Fanout:
        backend = self.backend
        if self.tracing.tracer is not None:
            backend = PhaseTimedBackend(backend, self.tracing.tracer, otel_context.get_current())
        return Fanout(backend, requests, receive, background=self.background, metrics=self.metrics)

    def record(self, states: Sequence[ChoiceState]) -> None:
        totals = usage(states)
        self.metrics.record_usage(totals.prompt_tokens, totals.completion_tokens)

    async def drain(self) -> None:
        """Let pending aborts reach the backend before it shuts down."""
        if self.background:
            await asyncio.wait(set(self.background), timeout=DRAIN_TIMEOUT_S)


class PhaseTimedBackend(Backend):
    """``backend`` for the generations of one request, recording each one's phases as spans under
    ``parent`` (the request's span) when its stream ends; everything else is passed through."""

    def __init__(self, backend: Backend, tracer: Tracer, parent: Context) -> None:
        self.backend, self.tracer, self.parent = backend, tracer, parent

    def info(self) -> ModelInfo:
        return self.backend.info()

    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        return self._generate(request)

    async def _generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        submitted = time.time_ns()
        first_token: int | None = None
        last: TokenEvent | None = None
        stream = self.backend.generate(request)
        try:
            async for event in stream:
                if first_token is None and event.completion_tokens > 0:
                    first_token = time.time_ns()
                last = event
                yield event
        finally:
            self._record(request, submitted, first_token, time.time_ns(), last)
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _record(
        self, request: GenerationRequest, submitted: int, first_token: int | None, ended: int,
        last: TokenEvent | None,
    ) -> None:  # fmt: skip
        attributes: dict[str, str | int] = {GENERATION_ID_ATTRIBUTE: request.request_id}
        finish = (last.finish_reason if last is not None else None) or "unfinished"
        if last is not None:
            attributes |= {
                "gen_ai.usage.input_tokens": last.prompt_tokens,
                "gen_ai.usage.output_tokens": last.completion_tokens,
                "llmops.cached_prompt_tokens": last.cached_prompt_tokens,
            }
        attributes["llmops.finish_reason"] = finish
        failed = finish in ("error", "abort", "unfinished")
        prefill = self.tracer.start_span(
            "queue_wait_and_prefill", context=self.parent, start_time=submitted, attributes=attributes
        )
        if first_token is None:  # no token came: failed, aborted or cut off while queued or prefilling
            prefill.set_status(Status(StatusCode.ERROR, finish) if failed else Status(StatusCode.OK))
            prefill.end(end_time=ended)
            return
        prefill.end(end_time=first_token)
        decode = self.tracer.start_span(
            "decode", context=self.parent, start_time=first_token, attributes=attributes
        )
        if failed:
            decode.set_status(Status(StatusCode.ERROR, finish))
        decode.end(end_time=ended)

    async def abort(self, request_id: str) -> None:
        await self.backend.abort(request_id)

    async def health(self) -> HealthStatus:
        return await self.backend.health()

    def stats(self) -> EngineStats:
        return self.backend.stats()

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await self.backend.embed(texts)

    async def classify(self, texts: list[str]) -> list[Classification]:
        return await self.backend.classify(texts)

    def count_tokens(self, text: str) -> int | None:
        return self.backend.count_tokens(text)
