"""Issue-level check through the CLI: a trained model against a deliberately weakened one."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.registry import Registry
from llmops.store.home import open_home

RECIPE = """
kind: pretrain
name: {name}
model: {{architecture: llama, hidden_size: 64, intermediate_size: 128, num_layers: 2, num_heads: 4,
        num_kv_heads: 2, max_position_embeddings: 128}}
data: {{train: intent-train, validation: intent-validation, schema: prompt_completion}}
tokenizer: {{source: train, vocab_size: 400}}
optim: {{lr: 5.0e-3, warmup_steps: 10, max_steps: {steps}, batch_size: 32, seed: 0}}
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
gates:
  - {metric: exact_match, no_regression_vs: production, tolerance: 0.02}
statistics: {resamples: 500}
"""


@pytest.mark.slow
def test_trained_beats_weakened_and_gates_decide(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("data", "synth", "intent", "--name", "intent", "--n", "800", "--seed", "5").code == 0
    assert cli("data", "split", "intent", "--key", "prompt").code == 0
    for name, steps in (("strong", 150), ("weak", 2)):
        recipe = tmp_path / f"{name}.yaml"
        recipe.write_text(RECIPE.format(name="intent-bot", steps=steps))
        out = tmp_path / name
        trained = cli("train", "run", recipe, "--output", out, "--threads", "2")
        assert trained.code == 0, trained.err
    # intent-bot@1 is the trained model, intent-bot@2 its weakened twin (two steps from init)
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    pair = ("--candidate", "intent-bot@1", "--baseline", "intent-bot@2")
    compared = cli("eval", "compare", *pair, "--suite", suite)
    assert compared.code == 0, compared.err
    row = next(line for line in compared.out.splitlines() if "exact_match" in line and "better" in line)
    assert "better" in row

    assert cli("models", "alias", "set", "intent-bot", "production", "1").code == 0
    weak = cli("eval", "run", suite, "--model", "intent-bot@2")
    assert weak.code == 1, "a regression against production fails the gate"
    strong = cli("eval", "run", suite, "--model", "intent-bot@1")
    assert strong.code == 0, strong.out
    tags = Registry.from_home(open_home()).get("intent-bot@2").tags
    assert tags["gates/intent"]["passed"] is False
