"""``ReplicaService``: what the handlers of one replica share (backend, names, limits, metrics).

Model names: clients ask for the served model name (the base model) or the name of an adapter the
backend has loaded (generation then runs with that adapter); anything else is a 404 that lists the
served names.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.types import Receive

from llmops.engine.types import Backend, GenerationRequest
from llmops.errors import NotFound
from llmops.serve.choices import ChoiceState, usage
from llmops.serve.config import ServeConfig
from llmops.serve.fanout import Fanout
from llmops.serve.metrics import ServeMetrics

DRAIN_TIMEOUT_S = 5.0


@dataclass
class ReplicaService:
    backend: Backend
    served_model_name: str
    config: ServeConfig
    metrics: ServeMetrics
    created: int = field(default_factory=lambda: int(time.time()))
    background: set[asyncio.Task[None]] = field(default_factory=set)

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

    def fanout(self, requests: Sequence[GenerationRequest], receive: Receive) -> Fanout:
        return Fanout(self.backend, requests, receive, background=self.background, metrics=self.metrics)

    def record(self, states: Sequence[ChoiceState]) -> None:
        totals = usage(states)
        self.metrics.record_usage(totals.prompt_tokens, totals.completion_tokens)

    async def drain(self) -> None:
        """Let pending aborts reach the backend before it shuts down."""
        if self.background:
            await asyncio.wait(set(self.background), timeout=DRAIN_TIMEOUT_S)
