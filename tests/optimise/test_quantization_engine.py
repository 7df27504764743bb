"""The in-process engine serves quantised versions: continuous batching and prefix caching keep
giving what the quantised model gives alone; LoRA on a quantised base is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.engine.engine_factories import collect, collect_all, greedy, random_prompts, reference_greedy
from transformers import AutoModelForCausalLM

from llmops.engine.config import EngineConfig
from llmops.engine.transformers_backend import TransformersBackend
from llmops.engine.types import GenerationRequest
from llmops.errors import InvalidInput
from llmops.train.quantization import load_quantized, quantize_model, save_quantized, weight_bytes
from llmops.train.quantized_linear import METHODS


def _quantized(source_dir: Path, out: Path, method: str) -> Path:
    model = AutoModelForCausalLM.from_pretrained(source_dir, local_files_only=True)
    return save_quantized(model, quantize_model(model, method, group_size=32), source_dir, out)


def _backend(model_dir: Path) -> TransformersBackend:
    config = EngineConfig(
        threads=1, num_kv_blocks=256, block_size=8, max_num_batched_tokens=256, enable_prefix_caching=True
    )
    return TransformersBackend(model_dir, config)


@pytest.mark.parametrize("method", METHODS)
def test_engine_batches_and_caches_prefixes_on_a_quantized_model(
    method: str, source_dir: Path, tmp_path: Path
) -> None:
    model_dir = _quantized(source_dir, tmp_path / method, method)
    reference = load_quantized(model_dir)
    backend = _backend(model_dir)
    try:
        assert weight_bytes(backend.engine.adapters.base_model) == weight_bytes(reference)
        shared = random_prompts(1, 24, 24, seed=5)[0]
        prompts = [shared + tail for tail in random_prompts(6, 1, 10, seed=6)]
        warm = GenerationRequest("warm", greedy(4), prompt_token_ids=tuple(prompts[0]))
        asyncio.run(collect(backend, warm))
        requests = [
            GenerationRequest(f"q{i}", greedy(10), prompt_token_ids=tuple(p)) for i, p in enumerate(prompts)
        ]
        results = asyncio.run(collect_all(backend, requests))  # six at once: one running batch
        matches = 0
        for prompt, events in zip(prompts, results, strict=True):
            assert events[-1].cached_prompt_tokens >= 24  # at least the three 8-token blocks shared
            matches += [e.token_id for e in events] == reference_greedy(reference, prompt, 10)[0]
        # int8-dynamic is exact per row; the bf16 kernels may round a batch differently from one row
        assert matches >= (len(prompts) if method == "int8-dynamic" else len(prompts) - 1)
        assert backend.stats().prefix_cache_hits >= 24 * len(prompts)
    finally:
        asyncio.run(backend.shutdown())


def test_lora_on_a_quantized_base_is_refused(source_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    base = AutoModelForCausalLM.from_pretrained(source_dir, local_files_only=True)
    adapter = tmp_path / "adapter"
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(adapter)
    with pytest.raises(InvalidInput, match="quantised base"):
        TransformersBackend(_quantized(source_dir, tmp_path / "q", "int8-dynamic"), adapters={"a": adapter})


def test_a_quantized_model_in_another_dtype_is_refused_before_it_loads(
    source_dir: Path, tmp_path: Path
) -> None:
    quantized = _quantized(source_dir, tmp_path / "q", "int8-weight-only")
    with pytest.raises(InvalidInput, match="float32") as refused:
        TransformersBackend(quantized, EngineConfig(threads=1, dtype="bfloat16"))
    assert refused.value.param == "dtype"
