"""`llmops models quantize` and `llmops models compare` through the real CLI, and what they refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.engine.engine_factories import build_tokenizer
from tests.factories import make_tiny_model

from llmops.data.versions import DatasetStore
from llmops.evals.generation import Prompt, TransformersGenerator
from llmops.evals.suite import GenerationParams
from llmops.registry import Registry
from llmops.store.home import open_home

SUITE = """
name: probe
dataset: probe
fields: {input: prompt, reference: completion}
generation: {max_tokens: 6, temperature: 0.0}
metrics:
  - {name: exact_match}
statistics: {resamples: 200}
"""
PROMPTS = [
    "The engine schedules",
    "Prefix caching shares",
    "def add(a, b):",
    "Café, naïve",
    "The caller streams",
    "Key and value blocks",
    "return a + b",
    "Prompts that start",
]


def _models() -> list[str]:
    return sorted(m.name for m in Registry.from_home(open_home()).list_models())


def _probe_suite(source_dir: Path, tmp_path: Path) -> Path:
    """A suite whose references are the source's own greedy replies (so the source scores 1.0)."""
    generator = TransformersGenerator(source_dir, threads=1)
    replies = generator.generate([Prompt(p) for p in PROMPTS], GenerationParams(max_tokens=6))
    rows = [{"prompt": p, "completion": g.text} for p, g in zip(PROMPTS, replies, strict=True)]
    DatasetStore.from_home(open_home()).commit("probe", rows, "prompt_completion")
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    return suite


def test_quantize_registers_with_lineage_and_compare_prints_the_tradeoff(  # type: ignore[no-untyped-def]
    cli, source_dir: Path, tmp_path: Path
) -> None:
    assert cli("models", "register", source_dir, "--name", "tiny").code == 0
    suite = _probe_suite(source_dir, tmp_path)
    assert cli("eval", "run", suite, "--model", "tiny@1").code == 0  # the source's evaluation

    done = cli("models", "quantize", "tiny@1", "--method", "int8-dynamic")
    assert done.code == 0, done.err
    assert "registered tiny-int8-dynamic@1 (int8-dynamic, 14 linear layers) from tiny@1" in done.out
    version = Registry.from_home(open_home()).get("tiny-int8-dynamic@1")
    assert version.base == "tiny@1" and version.format == "hf-causal-lm"
    record = version.tags["quantization"]
    assert record["method"] == "int8-dynamic" and record["source"] == "tiny@1"
    assert record["weight_bytes"] < record["source_weight_bytes"]
    shown = cli("models", "show", "tiny-int8-dynamic@1")
    assert "int8-dynamic of tiny@1 (14 linear layers, weight memory" in " ".join(shown.out.split())
    lineage = cli("models", "lineage", "tiny-int8-dynamic@1")
    assert "base: tiny@1" in lineage.out
    assert "descendant: tiny-int8-dynamic@1" in cli("models", "lineage", "tiny@1").out

    missing = cli("models", "compare", "tiny-int8-dynamic@1", "tiny@1")
    assert missing.code != 0 and "--measure" in missing.err

    measured = cli(
        "models", "compare", "tiny-int8-dynamic@1", "tiny@1", "--measure",
        "--requests", "2", "--concurrency", "4", "--max-tokens", "4",
    )  # fmt: skip
    assert measured.code == 0, measured.err
    # the source's own suite was found and used: quality with its interval, speed and memory as ratios
    assert "quality on suite probe" in measured.out and "exact_match" in measured.out
    for label in ("decode tokens/s, single stream", "tokens/s at 4 concurrent", "p95 TTFT", "weight memory"):
        assert label in measured.out
    stored = Registry.from_home(open_home()).get("tiny-int8-dynamic@1").tags["tradeoff/tiny@1"]
    (quality,) = stored["quality"]
    assert quality["baseline"] == 1.0 and quality["candidate"] >= 0.5  # random weights: near ties flip
    assert quality["low"] <= quality["difference"] <= quality["high"]
    assert stored["serving"]["candidate"]["weight_bytes"] < stored["serving"]["baseline"]["weight_bytes"]
    assert stored["serving"]["candidate"]["decode_tokens_per_s"] > 0

    again = cli("models", "compare", "tiny-int8-dynamic@1", "tiny@1", "--json")
    assert again.code == 0 and json.loads(again.out)["quality"] == stored["quality"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--method", "int3"), "unknown quantisation method 'int3'"),
        (("--method", "int4-weight-only", "--group-size", "48"), "group_size 48"),
    ],
)
def test_bad_method_is_refused_and_nothing_registered(  # type: ignore[no-untyped-def]
    cli, source_dir: Path, args: tuple[str, ...], message: str
) -> None:
    assert cli("models", "register", source_dir, "--name", "tiny").code == 0
    refused = cli("models", "quantize", "tiny@1", *args)
    assert refused.code != 0 and message in refused.err
    assert _models() == ["tiny"]


def test_already_quantized_adapter_encoder_and_other_architectures_are_refused(  # type: ignore[no-untyped-def]
    cli, source_dir: Path, tmp_path: Path
) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    assert cli("models", "register", source_dir, "--name", "tiny").code == 0
    assert cli("models", "quantize", "tiny@1", "--method", "int4-weight-only", "--name", "tiny-q").code == 0
    twice = cli("models", "quantize", "tiny-q@1", "--method", "int8-dynamic")
    assert twice.code != 0 and "already quantised" in twice.err

    adapter = tmp_path / "adapter"
    base = AutoModelForCausalLM.from_pretrained(source_dir, local_files_only=True)
    get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(adapter)
    assert cli("models", "register", adapter, "--name", "tiny-lora", "--base", "tiny@1").code == 0
    lora = cli("models", "quantize", "tiny-lora@1", "--method", "int8-dynamic")
    assert lora.code != 0 and "is a PEFT adapter: merge it into its base" in lora.err

    encoder = tmp_path / "encoder"
    bert = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    BertModel(bert).save_pretrained(encoder)
    build_tokenizer().save_pretrained(encoder)
    assert cli("models", "register", encoder, "--name", "enc").code == 0
    enc = cli("models", "quantize", "enc@1", "--method", "int8-dynamic")
    assert enc.code != 0 and "is a hf-encoder; only causal LMs" in enc.err

    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=128)).save_pretrained(gpt2)
    assert cli("models", "register", gpt2, "--name", "gpt").code == 0
    other = cli("models", "quantize", "gpt@1", "--method", "int8-dynamic")
    assert other.code != 0 and "architecture 'gpt2' is not supported" in other.err

    assert _models() == ["enc", "gpt", "tiny", "tiny-lora", "tiny-q"]
    assert [v.version for v in Registry.from_home(open_home()).list_versions("tiny-q")] == [1]


def test_make_tiny_model_quantizes_too(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A model without a tokenizer (weights and config only) still quantises and registers."""
    assert cli("models", "register", make_tiny_model(tmp_path / "m"), "--name", "bare").code == 0
    done = cli("models", "quantize", "bare", "--method", "int8-weight-only", "--name", "bare-w8")
    assert done.code == 0, done.err
    assert "registered bare-w8@1" in done.out


def test_quantize_stage_registers_and_records_the_tradeoff(  # type: ignore[no-untyped-def]
    cli, source_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    import yaml

    monkeypatch.chdir(tmp_path)  # the run writes its reports/ under the working directory

    assert cli("models", "register", source_dir, "--name", "tiny").code == 0
    suite = _probe_suite(source_dir, tmp_path)
    stage = {
        "kind": "quantize",
        "params": {
            "model": "tiny@1",
            "method": "int4-weight-only",
            "name": "tiny-int4",
            "options": {"group_size": 32},
            "suite": suite.name,
            "serving": {"requests": 1, "concurrency": 2, "max_tokens": 3},
        },
    }
    pipeline = tmp_path / "llmops.yaml"
    pipeline.write_text(yaml.safe_dump({"name": "shrink", "stages": {"quantize": stage}}))
    first = cli("pipeline", "run", pipeline)
    assert first.code == 0, first.out + first.err
    assert "tiny-int4@1: weight memory" in first.out and "exact_match" in first.out
    version = Registry.from_home(open_home()).get("tiny-int4@1")
    assert version.base == "tiny@1" and version.tags["pipeline"] == "shrink"
    assert version.tags["quantization"]["method"] == "int4-weight-only"
    assert version.tags["tradeoff/tiny@1"]["serving"]["candidate"]["disk_bytes"] > 0
    again = cli("pipeline", "run", pipeline)
    assert again.code == 0 and "[skip] quantize" in again.out  # cached: same source, same parameters

    stage["params"]["options"] = {"group": 32}  # type: ignore[index]
    pipeline.write_text(yaml.safe_dump({"name": "shrink", "stages": {"quantize": stage}}))
    bad = cli("pipeline", "run", pipeline)
    assert bad.code == 2 and "options.group" in bad.err
    stage["params"].update(options={}, method="int3")  # type: ignore[attr-defined]
    pipeline.write_text(yaml.safe_dump({"name": "shrink", "stages": {"quantize": stage}}))
    bad = cli("pipeline", "run", pipeline)
    assert bad.code == 2 and "params.method" in bad.err and "int8-dynamic" in bad.err


def test_the_stage_offers_the_methods_the_kernels_have() -> None:
    from typing import get_args

    from llmops.pipelines.stages.optimise import Method
    from llmops.train.quantized_linear import METHODS

    assert get_args(Method) == METHODS
