"""Fixtures for the engine tests: the tiny model directory, a reference model, backend factory."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.engine.engine_factories import VOCAB_SIZE, build_model, build_tokenizer

from llmops.engine.config import EngineConfig
from llmops.engine.transformers_backend import TransformersBackend


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tokenizer()
    assert len(tokenizer) <= VOCAB_SIZE
    tokenizer.save_pretrained(directory)
    build_model(VOCAB_SIZE).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def reference_model(tiny_model_dir: Path) -> Any:
    """The same weights through plain transformers (SDPA attention) for ``generate``."""
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    return AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, local_files_only=True, dtype=torch.float32
    ).eval()


@pytest.fixture
def make_backend(tiny_model_dir: Path) -> Iterator[Callable[..., TransformersBackend]]:
    """Build backends on the tiny model (1 thread); shut down after the test."""
    made: list[TransformersBackend] = []

    def make(model_dir: Path | None = None, adapters: dict[str, Path] | None = None, **config: Any):
        settings = {"threads": 1, "num_kv_blocks": 256, "block_size": 8, "max_num_batched_tokens": 256}
        settings.update(config)
        backend = TransformersBackend(model_dir or tiny_model_dir, EngineConfig(**settings), adapters)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        asyncio.run(backend.shutdown())
