"""A cycle through the real retrain (recipe runner) and the real comparison (evals runner) on a tiny
model trained here; only the rollout is a fake. Checks the wiring, not the model's quality."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.loop.conftest import give_feedback, log_request
from tests.loop.loop_fakes import FakeRollout

from llmops.data.versions import DatasetStore
from llmops.loop.config import parse_config
from llmops.loop.service import LoopService
from llmops.registry import Registry
from llmops.store.home import Home
from llmops.train.tracked import run_recipe

BASE = """
kind: pretrain
name: bot
model: {architecture: llama, hidden_size: 32, intermediate_size: 64, num_layers: 1, num_heads: 2,
        num_kv_heads: 1, max_position_embeddings: 128}
data: {train: orig-train@1, schema: prompt_completion}
tokenizer: {source: train, vocab_size: 300}
optim: {lr: 3.0e-3, warmup_steps: 1, max_steps: 3, batch_size: 8, seed: 0}
max_seq_len: 64
"""
TUNE = """
kind: finetune
model: {base: bot@production}
data: {train: placeholder, schema: prompt_completion}
tokenizer: {source: base}
optim: {lr: 1.0e-3, warmup_steps: 0, max_steps: 2, batch_size: 4, seed: 0}
max_seq_len: 64
"""
SUITE = """
name: original
dataset: orig-test@1
fields: {input: prompt, reference: completion}
generation: {max_tokens: 3, temperature: 0.0}
metrics: [{name: exact_match}]
statistics: {resamples: 200}
"""


PIPELINE = """
name: bot-retrain
params: {train: "", base: "", model: bot}
stages:
  train:
    kind: train
    params:
      recipe: tune.yaml
      train: "${params.train}"
      model_name: "${params.model}"
      threads: 1
      set: {model.base: "${params.base}"}
"""


@pytest.mark.slow
def test_real_retrain_and_comparison_feed_the_gate(sqlite_home: Home, tmp_path: Path) -> None:
    _cycle(sqlite_home, tmp_path, {"recipe": "tune.yaml"})


@pytest.mark.slow
def test_retraining_through_the_pipelines_runner(sqlite_home: Home, tmp_path: Path) -> None:
    (tmp_path / "retrain.llmops.yaml").write_text(PIPELINE)
    numbers = _cycle(sqlite_home, tmp_path, {"recipe": "tune.yaml", "pipeline": "retrain.llmops.yaml"})
    trained = numbers["trained"]
    assert trained["pipeline"] == "bot-retrain" and trained["stage"] == "ran" and trained["pipeline_run"]


def _cycle(home: Home, tmp_path: Path, retrain: dict[str, str]) -> dict[str, dict[str, Any]]:
    datasets = DatasetStore.from_home(home)
    rows = [{"prompt": f"order {i} status", "completion": f"shipped {i % 3}"} for i in range(40)]
    datasets.commit("orig-train", rows, "prompt_completion")
    datasets.commit("orig-test", rows[:10], "prompt_completion")
    (tmp_path / "base.yaml").write_text(BASE)
    base = run_recipe(home, tmp_path / "base.yaml", output_dir=tmp_path / "b", threads=1, show_progress=False)
    Registry.from_home(home).set_alias("bot", "production", base.version.version)
    (tmp_path / "tune.yaml").write_text(TUNE)
    (tmp_path / "suite.yaml").write_text(SUITE)
    for i in range(30):
        request = log_request(home, f"wo ist paket {i} heute", "?", model_version=base.version.ref)
        give_feedback(home, request, thumbs="down", corrected=f"lager {i % 2}")
    config = parse_config(
        {
            "deployment": "bot",
            "model": "bot",
            "triggers": [{"kind": "new_data", "min_rows": 10}],
            "curation": {
                "labels": [{"kind": "corrections"}],
                "replay": {"dataset": "orig-train@1", "share": 0.2},
                "min_rows": 10,
                "min_eval_rows": 4,
            },
            "retrain": retrain,
            "gate": {"suite": "suite.yaml", "metric": "exact_match"},
        },
        base_dir=tmp_path,
    )
    service = LoopService(home, config, rollout=FakeRollout(home))
    done = service.once()
    assert done.cycle is not None
    assert done.cycle.state in ("promoted", "rejected"), service.history()[0].transitions
    (summary,) = service.history()
    numbers = {t.to_state: t.numbers for t in summary.transitions}
    evaluated = numbers["evaluated"]
    assert evaluated["original"]["n"] == 10 and evaluated["fresh"]["n"] == numbers["curated"]["fresh_rows"]
    assert evaluated["fresh"]["dataset"] == summary.data["fresh_dataset"]
    assert evaluated["original"]["candidate_run"] and evaluated["original"]["champion_run"]
    candidate = Registry.from_home(home).get(summary.data["candidate"])
    assert candidate.base == base.version.ref and candidate.source_run_id == numbers["trained"]["run_id"]
    trained_on = {f"{use.dataset}@{use.version}" for use in candidate.datasets if use.role == "train"}
    assert trained_on == {summary.data["train_dataset"]}
    assert "gates/loop-bot" in candidate.tags
    return numbers
