"""Offline generation: answer a list of prompts with the in-process engine, outside any server.

Used to have a distillation teacher answer a dataset's prompts (``distill.teacher_data``): prompts
go through the model's ``PromptEncoder`` and stop at its stop tokens, exactly as the model is
served; requests run under continuous batching, at most ``max_num_seqs`` in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from llmops.engine.config import EngineConfig
from llmops.engine.transformers_backend import TransformersBackend
from llmops.engine.types import GenerationRequest, SamplingParams
from llmops.errors import LLMOpsError


def complete_prompts(
    model_dir: Path, prompts: Sequence[str], max_tokens: int, *, config: EngineConfig | None = None
) -> list[str]:
    """The model's greedy completion of each prompt, in order (text after the prompt, stop excluded)."""
    backend = TransformersBackend(Path(model_dir), config or EngineConfig())
    return asyncio.run(_complete_all(backend, list(prompts), max_tokens))


async def _complete_all(backend: TransformersBackend, prompts: list[str], max_tokens: int) -> list[str]:
    slots = asyncio.Semaphore(backend.config.max_num_seqs)
    sampling = SamplingParams(max_tokens=max_tokens, temperature=0.0)

    async def one(index: int, prompt: str) -> str:
        async with slots:
            request = GenerationRequest(f"offline-{index}", sampling, prompt=prompt)
            parts = []
            async for event in backend.generate(request):
                if event.finish_reason == "error":
                    raise LLMOpsError(f"generation failed for prompt {index}: {event.error}")
                parts.append(event.text)
            return "".join(parts)

    try:
        return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))
    finally:
        await backend.shutdown()
