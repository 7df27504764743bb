"""Training through the CLI: data in, a registered version with lineage out; LoRA on top; failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.registry import Registry
from llmops.registry.lineage import lineage
from llmops.store.home import open_home
from llmops.tracking import Tracker

PRETRAIN = """
kind: pretrain
name: tiny
model: {architecture: llama, hidden_size: 64, intermediate_size: 128, num_layers: 2, num_heads: 4,
        num_kv_heads: 2, max_position_embeddings: 128}
data: {train: intent-train, validation: intent-validation, schema: prompt_completion}
tokenizer: {source: train, vocab_size: 400}
optim: {lr: 3.0e-3, warmup_steps: 5, max_steps: 60, batch_size: 16, seed: 0}
max_seq_len: 96
eval_every: 20
checkpoint_every: 30
"""
LORA = """
kind: lora
name: tiny-lora
model: {base: tiny@1}
data: {train: intent-train, schema: prompt_completion}
tokenizer: {source: base}
lora: {r: 4, alpha: 8, target_modules: [q_proj, v_proj]}
optim: {lr: 1.0e-2, warmup_steps: 2, max_steps: 10, batch_size: 8, seed: 0}
max_seq_len: 96
"""


def _data(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("data", "synth", "intent", "--name", "intent", "--n", "400", "--seed", "3").code == 0
    assert cli("data", "split", "intent", "--key", "prompt").code == 0


@pytest.mark.slow
def test_pretrain_registers_a_version_with_lineage_then_lora(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _data(cli)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(PRETRAIN)
    trained = cli("train", "run", recipe, "--threads", "1")
    assert trained.code == 0, trained.err
    assert "registered tiny@1" in trained.out

    home = open_home()
    registry = Registry.from_home(home)
    version = registry.get("tiny@1")
    assert version.metrics["final_train_loss"] < 0.6 * version.metrics["initial_train_loss"]
    roles = {d.role: d.dataset for d in version.datasets}
    assert roles == {"train": "intent-train", "validation": "intent-validation"}
    run = Tracker.from_home(home).get_run(version.source_run_id or "")
    assert run.status == "FINISHED" and run.params["optim.max_steps"] == "60"
    assert len(Tracker.from_home(home).metric_history(run.id, "loss")) == 60
    trace = lineage(registry, "tiny@1")
    assert trace.datasets[0].parents[0].name == "intent", "lineage reaches the raw synthetic dataset"
    local = registry.local_path("tiny@1")
    assert (local / "tokenizer.json").exists() and (local / "model.safetensors").exists()

    lora = tmp_path / "lora.yaml"
    lora.write_text(LORA)
    tuned = cli("train", "run", lora, "--threads", "1")
    assert tuned.code == 0, tuned.err
    adapter = registry.get("tiny-lora@1")
    assert adapter.format == "peft-adapter" and adapter.base == "tiny@1"
    assert "tiny-lora@1" in lineage(registry, "tiny@1").descendants

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(local, local_files_only=True)
    model = PeftModel.from_pretrained(base, registry.local_path("tiny-lora@1"), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(local, local_files_only=True)
    ids = tokenizer("my order is late", return_tensors="pt").input_ids
    out = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids.shape[1], "the adapter loads and generates"


def test_failures_register_nothing(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _data(cli)
    missing = tmp_path / "missing.yaml"
    missing.write_text(PRETRAIN.replace("intent-train", "nope-train"))
    bad = cli("train", "run", missing)
    assert bad.code == 2 and "nope-train" in bad.err
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(PRETRAIN + "learning_speed: 11\n")
    assert "learning_speed" in cli("train", "run", unknown).err
    diverging = tmp_path / "nan.yaml"
    too_fast = PRETRAIN.replace("lr: 3.0e-3", "lr: 1.0e+6").replace("max_steps: 60", "max_steps: 8")
    diverging.write_text(too_fast)
    failed = cli("train", "run", diverging, "--threads", "1")
    assert failed.code != 0 and "step" in failed.err
    home = open_home()
    assert Registry.from_home(home).list_models() == []
    runs = Tracker.from_home(home).list_runs("train")
    assert runs and runs[0].status == "FAILED"
