"""A tiny model trained on the intent task keeps its exact match when quantised (through the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.registry import Registry
from llmops.store.home import open_home

RECIPE = """
kind: pretrain
name: intent-bot
model: {architecture: llama, hidden_size: 64, intermediate_size: 128, num_layers: 2, num_heads: 4,
        num_kv_heads: 2, max_position_embeddings: 128}
data: {train: intent-train, validation: intent-validation, schema: prompt_completion}
tokenizer: {source: train, vocab_size: 400}
optim: {lr: 5.0e-3, warmup_steps: 10, max_steps: 150, batch_size: 32, seed: 0}
max_seq_len: 96
packing: true
"""
SUITE = """
name: intent
dataset: intent-test
fields: {input: prompt, reference: completion}
generation: {max_tokens: 24, temperature: 0.0}
metrics:
  - {name: exact_match}
statistics: {resamples: 500}
"""
# exact-match points a quantised version may lose against its source on this suite
BOUND = {"int8-dynamic": 0.02, "int8-weight-only": 0.02, "int4-weight-only": 0.05}


@pytest.mark.slow
def test_quantized_versions_score_within_the_bound_of_their_source(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("data", "synth", "intent", "--name", "intent", "--n", "800", "--seed", "5").code == 0
    assert cli("data", "split", "intent", "--key", "prompt").code == 0
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    trained = cli("train", "run", recipe, "--output", tmp_path / "run", "--threads", "2")
    assert trained.code == 0, trained.err
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    assert cli("eval", "run", suite, "--model", "intent-bot@1").code == 0
    source_em = None
    for method, bound in BOUND.items():
        assert cli("models", "quantize", "intent-bot@1", "--method", method).code == 0
        compared = cli(
            "models", "compare", f"intent-bot-{method}@1", "intent-bot@1", "--measure", "--no-speed"
        )
        assert compared.code == 0, compared.err
        (row,) = (
            Registry.from_home(open_home())
            .get(f"intent-bot-{method}@1")
            .tags["tradeoff/intent-bot@1"]["quality"]
        )
        source_em = row["baseline"]
        assert source_em >= 0.5, "the source learnt the task"
        assert row["difference"] >= -bound, f"{method}: {row['candidate']} vs {row['baseline']}"
