"""Encoder (BERT-style) classifiers: the recipe rules, then train -> register -> evaluate through the
CLI on the intent task, and the backend that classifies, embeds and refuses to generate."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from llmops.engine.encoder_backend import EncoderBackend
from llmops.engine.types import GenerationRequest
from llmops.errors import InvalidInput
from llmops.registry import Registry
from llmops.store.home import open_home
from llmops.train.recipe import parse_recipe

ROOT = Path(__file__).resolve().parents[2]
ENCODER = """
kind: encoder
name: intent-encoder
encoder: {task: classification}
model: {architecture: bert, hidden_size: 64, intermediate_size: 128, num_layers: 2, num_heads: 4,
        max_position_embeddings: 64}
data: {train: intent-train, validation: intent-validation, schema: prompt_completion}
tokenizer: {source: train, vocab_size: 400, min_frequency: 2}
optim: {lr: 2.0e-3, weight_decay: 0.01, warmup_steps: 10, max_steps: 150, batch_size: 32, seed: 0}
max_seq_len: 64
"""


def _raw(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "kind": "encoder",
        "encoder": {"task": "classification"},
        "model": {"architecture": "bert", "hidden_size": 32, "num_heads": 2},
        "data": {"train": "d", "schema": "prompt_completion"},
        "tokenizer": {"source": "train"},
        "optim": {"max_steps": 1},
    }
    raw.update(changes)
    return raw


def test_encoder_recipe_rules_name_the_field() -> None:
    recipe = parse_recipe(_raw())
    assert recipe.encoder is not None and recipe.encoder.task == "classification"
    with pytest.raises(InvalidInput, match="encoder"):
        parse_recipe({k: v for k, v in _raw().items() if k != "encoder"})
    with pytest.raises(InvalidInput):  # a decoder kind cannot build a BERT
        parse_recipe({**{k: v for k, v in _raw().items() if k != "encoder"}, "kind": "pretrain"})


@pytest.mark.slow
def test_an_encoder_classifier_trains_registers_evaluates_and_refuses_to_chat(
    cli: Any, tmp_path: Path
) -> None:
    assert cli("data", "synth", "intent", "--name", "intent", "--n", "800", "--seed", "3").code == 0
    assert cli("data", "split", "intent", "--key", "prompt").code == 0
    (tmp_path / "encoder.yaml").write_text(ENCODER)
    trained = cli("train", "run", tmp_path / "encoder.yaml", "--threads", "1")
    assert trained.code == 0, trained.err
    assert "registered intent-encoder@1" in trained.out

    registry = Registry.from_home(open_home())
    version = registry.get("intent-encoder@1")
    assert version.tags["task"] == "classification" and version.tags["architecture"] == "bert"
    labels = version.tags["labels"]
    assert len(labels) >= 3 and labels == sorted(labels)
    assert version.metrics["final_train_loss"] < version.metrics["initial_train_loss"]

    suite = ROOT / "examples" / "demo" / "intent-classifier-suite.yaml"
    evaluated = cli("eval", "run", suite, "--model", "intent-encoder@1")
    assert evaluated.code == 0, evaluated.out  # the suite's gate: accuracy >= 0.8
    assert "| `accuracy` |" in evaluated.out and "| `f1` |" in evaluated.out

    backend = EncoderBackend(registry.local_path("intent-encoder@1"))
    assert backend.info().task == "classification"
    prompts = ["where is my order?", "I want my money back"]
    classified = asyncio.run(backend.classify(prompts))
    assert [c.label in labels for c in classified] == [True, True]
    assert all(abs(sum(c.scores.values()) - 1.0) < 1e-4 for c in classified)
    vectors = asyncio.run(backend.embed(prompts))
    assert len(vectors) == 2 and len(vectors[0]) == 64  # mean pooling over the hidden size
    with pytest.raises(InvalidInput, match="cannot generate") as refused:
        backend.generate(GenerationRequest(request_id="r1", prompt="hello"))
    assert refused.value.status_code == 400 and refused.value.code == "model_cannot_generate"
    json.dumps(version.tags)  # tags stay JSON
