"""The backend of an encoder version: classification and mean-pooled embeddings, no generation.

An encoder reads a text and answers in one forward pass, so there is no scheduler or KV cache:
requests are batched: the texts of the requests waiting for the same work (classify or embed) run
in one forward pass, up to ``batch_size`` texts, one batch at a time on a worker thread (torch
releases the GIL), in arrival order.
Asked to generate (chat, completions), it refuses with a 400 that names the cause, before anything
runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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


@dataclass(frozen=True)
class _Job:
    """One request's texts, the work it asks for, and where its results go."""

    work: Callable[[list[str]], list[Any]]
    texts: list[str]
    done: asyncio.Future[list[Any]]


def cannot_generate(info: ModelInfo) -> InvalidInput:
    """The 400 for a generation asked of a model that does not generate (an encoder)."""
    routes = "/v1/classify or /v1/embeddings" if info.task == "classification" else "/v1/embeddings"
    return InvalidInput(
        f"this model is an encoder ({info.architecture}, {info.task}): it reads text but cannot "
        f"generate, so chat and completions are not served; use {routes}",
        param="model",
        code="model_cannot_generate",
    )


class EncoderBackend(Backend):
    """Serves the encoder saved in ``model_dir`` (safetensors, local only)."""

    def __init__(self, model_dir: str | Path, *, batch_size: int = 64, threads: int | None = None) -> None:
        from llmops.train.encoder_inference import EncoderRunner

        self.model_dir = Path(model_dir)
        self.threads = threads  # torch intra-op threads of the worker thread (None: torch's default)
        self.runner = EncoderRunner(self.model_dir, batch_size=batch_size)
        self._pending: list[_Job] = []
        self._worker: asyncio.Task[None] | None = None
        self._running = 0
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
        return cannot_generate(self.info())

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
            waiting=sum(len(job.texts) for job in self._pending),
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

    async def _run(self, work: Callable[[list[str]], list[_T]], texts: list[str]) -> list[_T]:
        """``work`` over ``texts``, in one forward pass with the texts of other requests waiting for
        the same work (up to ``batch_size`` texts, arrival order)."""
        loop = asyncio.get_running_loop()
        job = _Job(work, texts, loop.create_future())
        self._pending.append(job)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await job.done

    async def _drain(self) -> None:
        while self._pending:
            batch = self._next_batch()
            self._running += len(batch)
            texts = [text for job in batch for text in job.texts]
            try:
                results = await asyncio.to_thread(self._on_worker, batch[0].work, texts)
            except Exception as exc:  # the request's own failure (a 400), or the engine's: each caller's
                for job in batch:
                    if not job.done.done():
                        job.done.set_exception(exc)
            else:
                offset = 0
                for job in batch:
                    if not job.done.done():
                        job.done.set_result(results[offset : offset + len(job.texts)])
                    offset += len(job.texts)
            finally:
                self._running -= len(batch)
                self._requests += len(batch)

    def _next_batch(self) -> list[_Job]:
        """The first waiting request, and those after it asking for the same work while they fit."""
        first = self._pending.pop(0)
        batch, size = [first], len(first.texts)
        while self._pending and self._pending[0].work == first.work:
            if size + len(self._pending[0].texts) > self.runner.batch_size:
                break
            job = self._pending.pop(0)
            batch.append(job)
            size += len(job.texts)
        return batch

    def _on_worker(self, work: Callable[[list[str]], list[_T]], texts: list[str]) -> list[_T]:
        # torch keeps the intra-op thread count per OS thread: set it on the worker that runs
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)
        return work(texts)
