"""Model building: deterministic by seed, counted once when tied, saved as safetensors only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from llmops.train.modeling import build_model, count_parameters, load_model, model_config, save_model
from llmops.train.recipe import NewModelSpec
from llmops.train.tokenizer import load_tokenizer


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_same_seed_same_weights(tokenizer_dir: Path, tiny_model: dict[str, Any], architecture: str) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    config = model_config(NewModelSpec(**{**tiny_model, "architecture": architecture}), tokenizer)
    assert config.vocab_size == len(tokenizer)
    assert config.eos_token_id == tokenizer.eos_token_id
    rng_before = torch.get_rng_state()
    a, b, c = build_model(config, seed=1), build_model(config, seed=1), build_model(config, seed=2)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's random stream is untouched
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))
    assert a.config.model_type == architecture


def test_tied_embeddings_are_counted_once(tokenizer_dir: Path, tiny_model: dict[str, Any]) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    tied = build_model(model_config(NewModelSpec(**tiny_model), tokenizer), seed=0)
    untied = build_model(model_config(NewModelSpec(**tiny_model, tie_embeddings=False), tokenizer), seed=0)
    embedding = len(tokenizer) * tiny_model["hidden_size"]
    assert count_parameters(untied).total - count_parameters(tied).total == embedding
    assert count_parameters(tied).trainable == count_parameters(tied).total


def test_save_writes_safetensors_only_and_reloads_equal(
    tokenizer_dir: Path, tiny_model: dict[str, Any], tmp_path: Path
) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    model = build_model(model_config(NewModelSpec(**tiny_model), tokenizer), seed=0)
    save_model(model, tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert "model.safetensors" in files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    again = load_model(tmp_path / "m")
    for (name, p), q in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
