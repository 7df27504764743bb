"""Our engine under the benchmark workloads, driven through the ``Backend`` contract (asyncio)."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

from llmops.engine.config import EngineConfig
from llmops.engine.transformers_backend import TransformersBackend
from llmops.engine.types import GenerationRequest, SamplingParams

_ids = itertools.count()


ENGINE_SETTINGS: dict[str, int | bool] = {
    "block_size": 16,
    "num_kv_blocks": 2048,
    "max_num_seqs": 64,
    "max_num_batched_tokens": 512,
    "max_model_len": 2048,
    "enable_prefix_caching": True,
    "max_queue_requests": 1024,
}


def make_backend(
    model_dir: Path, threads: int = 2, prefix_caching: bool = True, dtype: str = "auto"
) -> TransformersBackend:
    settings = {**ENGINE_SETTINGS, "enable_prefix_caching": prefix_caching, "dtype": dtype}
    return TransformersBackend(model_dir, EngineConfig(threads=threads, **settings))  # type: ignore[arg-type]


def _request(prompt: list[int], new_tokens: int) -> GenerationRequest:
    sampling = SamplingParams(max_tokens=new_tokens, temperature=0.0, ignore_eos=True)
    return GenerationRequest(f"bench-{next(_ids)}", sampling, prompt_token_ids=tuple(prompt))


async def _first_token_and_end(backend: TransformersBackend, request: GenerationRequest) -> tuple[float, int]:
    """(seconds to the first token, tokens generated)."""
    start = time.perf_counter()
    first = None
    tokens = 0
    async for event in backend.generate(request):
        if first is None and event.token_id is not None:
            first = time.perf_counter() - start
        tokens = event.completion_tokens
    assert first is not None
    return first, tokens


def throughput_run(backend: TransformersBackend, prompts: list[list[int]], new_tokens: int) -> float:
    """Seconds to serve all prompts submitted at once."""

    async def run() -> float:
        start = time.perf_counter()
        done = await asyncio.gather(
            *(_first_token_and_end(backend, _request(p, new_tokens)) for p in prompts)
        )
        elapsed = time.perf_counter() - start
        assert sum(tokens for _, tokens in done) == len(prompts) * new_tokens
        return elapsed

    return asyncio.run(run())


def poisson_ttft(
    backend: TransformersBackend, prompts: list[list[int]], arrivals: list[float], new_tokens: int
) -> list[float]:
    """TTFT of each request when requests arrive at ``arrivals`` (offsets in seconds)."""

    async def run() -> list[float]:
        origin = time.perf_counter()

        async def arrive(prompt: list[int], offset: float) -> float:
            await asyncio.sleep(max(0.0, origin + offset - time.perf_counter()))
            first, _ = await _first_token_and_end(backend, _request(prompt, new_tokens))
            return first

        return list(await asyncio.gather(*(arrive(p, t) for p, t in zip(prompts, arrivals, strict=True))))

    return asyncio.run(run())


def sequential_ttft(backend: TransformersBackend, prompts: list[list[int]], new_tokens: int) -> list[float]:
    """TTFT of each request sent after the previous one finished (one at a time)."""

    async def run() -> list[float]:
        return [(await _first_token_and_end(backend, _request(p, new_tokens)))[0] for p in prompts]

    return asyncio.run(run())
