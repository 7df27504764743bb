"""Serving measurements of two model directories through the in-process engine, in one run.

Both engines are built side by side and measured in turn on the same prompts (greedy,
``ignore_eos`` so every reply has ``max_tokens`` tokens): single stream (one request at a time, the
two models alternating per prompt so a change in the machine's load hits both alike; decode
tokens/s = tokens after the first over the time from the first token to the last) and
``concurrency`` requests at once (generated tokens/s over the wall time, and the 95th percentile
time to first token). Weight memory is what the loaded model's parameters and buffers hold.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from llmops.engine.config import EngineConfig
from llmops.engine.transformers_backend import TransformersBackend
from llmops.engine.types import GenerationRequest, SamplingParams
from llmops.train.quantization import disk_bytes, weight_bytes


@dataclass(frozen=True)
class ServingSettings:
    """How much to measure (kept small by default so a comparison stays quick)."""

    single_stream_requests: int = 4
    concurrency: int = 32
    max_tokens: int = 16
    threads: int = 1


@dataclass(frozen=True)
class ServingMeasure:
    decode_tokens_per_s: float  # single stream
    concurrent_tokens_per_s: float  # all requests of the concurrent batch together
    ttft_p95_s: float  # at `concurrency` requests at once
    weight_bytes: int
    disk_bytes: int

    def as_dict(self) -> dict[str, float]:
        return {key: float(value) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class _Reply:
    submitted: float
    first: float
    last: float
    tokens: int


async def _serve(backend: TransformersBackend, request_id: str, prompt: str, max_tokens: int) -> _Reply:
    sampling = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    submitted = time.perf_counter()
    first = last = 0.0
    tokens = 0
    async for event in backend.generate(GenerationRequest(request_id, sampling, prompt=prompt)):
        if event.token_id is not None:
            last = time.perf_counter()
            first = first or last
            tokens += 1
    return _Reply(submitted, first, last, tokens)


async def _single_stream(
    backends: list[TransformersBackend], prompts: list[str], max_tokens: int
) -> list[float]:
    tokens = [0] * len(backends)
    seconds = [0.0] * len(backends)
    for index, prompt in enumerate(prompts):
        order = range(len(backends)) if index % 2 == 0 else reversed(range(len(backends)))
        for arm in order:
            reply = await _serve(backends[arm], f"single-{arm}-{index}", prompt, max_tokens)
            tokens[arm] += reply.tokens - 1
            seconds[arm] += reply.last - reply.first
    return [t / s if s > 0 else 0.0 for t, s in zip(tokens, seconds, strict=True)]


async def _concurrent(
    backend: TransformersBackend, prompts: list[str], max_tokens: int
) -> tuple[float, float]:
    started = time.perf_counter()
    replies = await asyncio.gather(
        *(_serve(backend, f"batch-{i}", p, max_tokens) for i, p in enumerate(prompts))
    )
    wall = time.perf_counter() - started
    ttfts = [r.first - r.submitted for r in replies]
    return sum(r.tokens for r in replies) / wall, float(np.percentile(ttfts, 95))


async def _measure(
    backends: list[TransformersBackend], prompts: list[str], settings: ServingSettings
) -> list[tuple[float, float, float]]:
    warm = prompts[:1]
    for backend in backends:
        await _serve(backend, "warm-up", warm[0], 2)
    single = await _single_stream(backends, prompts[: settings.single_stream_requests], settings.max_tokens)
    batch = [prompts[i % len(prompts)] for i in range(settings.concurrency)]
    concurrent = [await _concurrent(backend, batch, settings.max_tokens) for backend in backends]
    return [(s, c[0], c[1]) for s, c in zip(single, concurrent, strict=True)]


def measure_serving(
    model_dirs: list[Path], prompts: list[str], settings: ServingSettings
) -> list[ServingMeasure]:
    """Measure each directory (same prompts, same run); results in the order given."""
    if not prompts:
        raise ValueError("measure_serving needs at least one prompt")
    config = EngineConfig(threads=settings.threads)
    backends = [TransformersBackend(d, config, model_id=f"arm-{i}") for i, d in enumerate(model_dirs)]
    try:
        measured = asyncio.run(_measure(backends, prompts, settings))
    finally:
        for backend in backends:
            asyncio.run(backend.shutdown())
    return [
        ServingMeasure(single, concurrent, ttft, weight_bytes(b.engine.adapters.base_model), disk_bytes(d))
        for (single, concurrent, ttft), b, d in zip(measured, backends, model_dirs, strict=True)
    ]
