"""Fixtures for the quantisation tests: a tiny Llama with a tokenizer, and one registered in a home."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.engine.engine_factories import VOCAB_SIZE, build_model, build_tokenizer


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hidden 64, 2 layers, GQA 4/2, vocab 384, random weights from a fixed seed, with its tokenizer."""
    directory = tmp_path_factory.mktemp("tiny-source")
    build_tokenizer().save_pretrained(directory)
    build_model(VOCAB_SIZE).save_pretrained(directory)
    return directory
