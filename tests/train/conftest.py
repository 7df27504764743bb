"""Fixtures for the train tests: tiny tokenizers, tiny models, tiny datasets, a recipe builder.

Everything is built here from configs (nothing is downloaded); models have hidden size 32 and two
layers so each test takes seconds on one CPU thread. The suite runs with ``--import-mode=importlib``,
so shared building blocks reach the tests as fixtures rather than imports.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from llmops.train import TrainInputs, train
from llmops.train.recipe import Recipe, parse_recipe
from llmops.train.tokenizer import train_tokenizer

COLOURS = ["red", "blue", "green", "black"]
SIZES = ["big", "small"]

# A memorisable pretraining set: 8 short sentences.
TEXT_ROWS = [{"text": f"the {c} cat sat on the {s} mat"} for c in COLOURS for s in SIZES]

# A supervised set: the completion is a deterministic function of the prompt.
PC_ROWS = [{"prompt": f"colour of the {c} {s} cat:", "completion": f" {c}"} for c in COLOURS for s in SIZES]

TINY_MODEL: dict[str, Any] = {
    "architecture": "llama",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_layers": 2,
    "num_heads": 4,
    "num_kv_heads": 2,
    "max_position_embeddings": 64,
}

RecipeFactory = Callable[..., Recipe]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: deterministic reductions and no fight over the CI machine's cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _make_recipe(**overrides: Any) -> Recipe:
    """A tiny pretraining recipe; keyword arguments replace top-level fields (dicts merge, None drops)."""
    raw: dict[str, Any] = {
        "kind": "pretrain",
        "model": dict(TINY_MODEL),
        "data": {"train": "train", "schema": "text"},
        "tokenizer": {"source": "train", "vocab_size": 300},
        "optim": {"lr": 1e-2, "max_steps": 30, "batch_size": 4, "warmup_steps": 2, "seed": 0},
        "max_seq_len": 32,
    }
    for key, value in overrides.items():
        if value is None:
            raw.pop(key, None)
        elif isinstance(value, dict) and isinstance(raw.get(key), dict) and "base" not in value:
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return parse_recipe(raw)


@pytest.fixture
def make_recipe() -> RecipeFactory:
    return _make_recipe


@pytest.fixture
def write_jsonl() -> Callable[[Path, list[dict[str, Any]]], Path]:
    return _write_jsonl


@pytest.fixture
def tiny_model() -> dict[str, Any]:
    return dict(TINY_MODEL)


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JSONL files: text.jsonl, pc.jsonl (prompt/completion), chat.jsonl (the same as chats)."""
    folder = tmp_path_factory.mktemp("corpus")
    _write_jsonl(folder / "text.jsonl", TEXT_ROWS)
    _write_jsonl(folder / "pc.jsonl", PC_ROWS)
    chats = [
        {
            "messages": [
                {"role": "user", "content": r["prompt"]},
                {"role": "assistant", "content": r["completion"]},
            ]
        }
        for r in PC_ROWS
    ]
    _write_jsonl(folder / "chat.jsonl", chats)
    return folder


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained byte-level BPE tokenizer with the chat template."""
    folder = tmp_path_factory.mktemp("tokenizer")
    texts = [r["text"] for r in TEXT_ROWS] + [r["prompt"] + r["completion"] for r in PC_ROWS]
    train_tokenizer(texts * 4, folder, vocab_size=320, model_max_length=64)
    return folder


@pytest.fixture(scope="session")
def base_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """A tiny llama briefly pretrained on the corpus, saved with its tokenizer: the finetune/lora base.

    Pretrained rather than random: a random base has embeddings so small (std 0.02) that frozen, they
    cap the logits near 0.6, and no adapter could lower the loss much.
    """
    folder = tmp_path_factory.mktemp("base")
    texts = [{"text": r["text"]} for r in TEXT_ROWS] + [
        {"text": r["prompt"] + r["completion"]} for r in PC_ROWS
    ]
    _write_jsonl(folder / "pretrain.jsonl", texts)
    recipe = _make_recipe(tokenizer={"source": "ref", "ref": "tiny-tokenizer"}, optim={"max_steps": 150})
    inputs = TrainInputs(train_path=folder / "pretrain.jsonl", tokenizer_dir=tokenizer_dir)
    result = train(recipe, inputs, folder / "run", num_threads=1)
    return result.model_dir
