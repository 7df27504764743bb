"""The backend of an encoder version: classification and mean-pooled embeddings, no generation.

An encoder reads a text and answers in one forward pass, so there is no scheduler or KV cache:
requests run one batch at a time on a worker thread (torch releases the GIL), in arrival order.
Asked to generate (chat, completions), it refuses with a 400 that names the cause, before anything
runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

from llmops.engine.types import (
    Backend,
    Classification,
    EngineStats,
    GenerationRequest,
    HealthStatus,
    ModelInfo,
    TokenEvent,
)
from llmops.errors import InvalidInput

_T = TypeVar("_T")


class EncoderBackend(Backend):
    """Serves the encoder saved in ``model_dir`` (safetensors, local only)."""

    def __init__(self, model_dir: str | Path, *, batch_size: int = 64) -> None:
        from llmops.train.encoder_inference import EncoderRunner

        self.model_dir = Path(model_dir)
        self.runner = EncoderRunner(self.model_dir, batch_size=batch_size)
        self._lock = asyncio.Lock()
        self._running = 0
        self._waiting = 0
        self._requests = 0
        self._prompt_tokens = 0
        self._started = time.monotonic()

    def info(self) -> ModelInfo:
        info = self.runner.info
        return ModelInfo(
            model_id=str(self.model_dir),
            max_model_len=info.max_length,
            task=info.task,
            architecture=info.architecture,
        )

    def refusal(self) -> InvalidInput:
        info = self.runner.info
        routes = "/v1/classify or /v1/embeddings" if info.task == "classification" else "/v1/embeddings"
        return InvalidInput(
            f"this model is an encoder ({info.architecture}, {info.task}): it reads text but cannot "
            f"generate, so chat and completions are not served; use {routes}",
            param="model",
            code="model_cannot_generate",
        )

    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        raise self.refusal()

    async def abort(self, request_id: str) -> None:
        return None

    async def health(self) -> HealthStatus:
        return HealthStatus(
            ok=True, detail=f"{self.runner.info.architecture} {self.runner.info.task} encoder"
        )

    def stats(self) -> EngineStats:
        return EngineStats(
            waiting=self._waiting,
            running=self._running,
            steps=self._requests,
            prompt_tokens_total=self._prompt_tokens,
        )

    def count_tokens(self, text: str) -> int | None:
        return self.runner.count_tokens(text)

    async def classify(self, texts: list[str]) -> list[Classification]:
        predictions = await self._run(self.runner.classify, texts)
        labels = self.runner.labels
        out = [
            Classification(p.label, dict(zip(labels, p.scores, strict=True)), p.tokens) for p in predictions
        ]
        self._prompt_tokens += sum(c.prompt_tokens for c in out)
        return out

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await self._run(self.runner.embed, texts)

    async def _run(self, work: Callable[[list[str]], _T], texts: list[str]) -> _T:
        self._waiting += 1
        acquired = False
        try:
            async with self._lock:
                self._waiting -= 1
                acquired = True
                self._running += 1
                try:
                    return await asyncio.to_thread(work, texts)
                finally:
                    self._running -= 1
                    self._requests += 1
        finally:
            if not acquired:
                self._waiting -= 1
