"""``EngineConfig.device`` and ``dtype``: resolution against the machine, clear refusals, and the
engine in bfloat16 on the CPU (model, KV cache, sampling and LoRA adapters in the chosen dtype).

This machine has no GPU: the CUDA branches of the resolution are exercised with torch's CUDA
queries patched; the engine itself runs on the CPU.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from tests.engine.engine_factories import collect, collect_all, greedy, random_prompts, reference_greedy
from tests.engine.test_engine_lora import make_adapter

from llmops.engine.config import EngineConfig
from llmops.engine.device import available_devices, resolve_placement
from llmops.engine.llm_engine import LLMEngine
from llmops.engine.transformers_backend import TransformersBackend
from llmops.engine.types import GenerationRequest, SamplingParams
from llmops.errors import InvalidInput

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


def _fake_gpus(monkeypatch: pytest.MonkeyPatch, count: int, bf16: bool = True) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)


def test_auto_is_float32_cpu_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpus(monkeypatch, 0)
    placement = EngineConfig().placement()
    assert (placement.device, placement.dtype) == (torch.device("cpu"), torch.float32)
    assert resolve_placement("cpu", "bfloat16").dtype == torch.bfloat16
    assert available_devices() == ["cpu"]


def test_auto_is_bfloat16_on_cuda_and_float16_without_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpus(monkeypatch, 2)
    assert resolve_placement("auto", "auto").device == torch.device("cuda", 0)
    assert resolve_placement("auto", "auto").dtype == torch.bfloat16
    assert resolve_placement("cuda:1", "float32").device == torch.device("cuda", 1)
    assert resolve_placement("cpu", "auto").dtype == torch.float32  # the CPU stays float32
    _fake_gpus(monkeypatch, 1, bf16=False)
    assert resolve_placement("cuda", "auto").dtype == torch.float16


def test_a_missing_gpu_index_names_the_field_and_what_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpus(monkeypatch, 1)
    with pytest.raises(InvalidInput, match=r"device: 'cuda:1' is not available") as caught:
        resolve_placement("cuda:1", "auto")
    assert caught.value.param == "device"
    assert "1 CUDA device(s)" in caught.value.message and "available: cpu, cuda:0" in caught.value.message


@pytest.mark.parametrize(("field", "value"), [("device", "gpu"), ("device", "cuda:x"), ("dtype", "fp8")])
def test_a_misspelt_device_or_dtype_is_a_validation_error(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        EngineConfig(**{field: value})
    assert caught.value.errors()[0]["loc"] == (field,)


@no_cuda
def test_asking_for_cuda_without_it_is_refused_before_the_weights_load(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match=r"finds no CUDA device here\); available: cpu\.") as caught:
        # No model directory at all: the device is checked first.
        TransformersBackend(tmp_path / "absent", EngineConfig(device="cuda", threads=1))
    assert caught.value.param == "device"
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True)
    with pytest.raises(InvalidInput, match=r"device: 'cuda:0' is not available"):
        LLMEngine(model, EngineConfig(device="cuda:0", threads=1, num_kv_blocks=8))


def _bf16_reference(tiny_model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, local_files_only=True, dtype=torch.bfloat16
    ).eval()


def test_bfloat16_on_the_cpu_generates_greedy_like_transformers(
    make_backend: Any, tiny_model_dir: Path
) -> None:
    backend = make_backend(device="cpu", dtype="bfloat16")
    runner = backend.engine.runner
    assert runner.key_cache.dtype == runner.value_cache.dtype == torch.bfloat16
    weights = {p.dtype for p in backend.engine.adapters.base_model.parameters()}
    assert weights == {torch.bfloat16}
    # RoPE's inverse frequencies stay float32, as from_pretrained keeps them.
    buffers = dict(backend.engine.adapters.base_model.named_buffers())
    assert buffers["model.rotary_emb.inv_freq"].dtype == torch.float32
    reference = _bf16_reference(tiny_model_dir)
    prompt = random_prompts(1, 20, 20, seed=5)[0]
    expected, _ = reference_greedy(reference, prompt, 12)
    events = asyncio.run(
        collect(backend, GenerationRequest("bf16", greedy(12), prompt_token_ids=tuple(prompt)))
    )
    assert [e.token_id for e in events] == expected
    assert events[-1].finish_reason == "length"


def test_bfloat16_batches_sample_and_report_logprobs(make_backend: Any) -> None:
    backend = make_backend(device="cpu", dtype="bfloat16", max_num_seqs=8)
    prompts = random_prompts(6, 4, 30, seed=6)
    sampling = [
        greedy(8, logprobs=True, top_logprobs=2),
        SamplingParams(max_tokens=8, temperature=0.8, top_p=0.9, seed=3, ignore_eos=True),
        SamplingParams(max_tokens=8, temperature=1.0, top_k=5, repetition_penalty=1.2, ignore_eos=True),
    ] * 2
    requests = [
        GenerationRequest(f"r{i}", params, prompt_token_ids=tuple(p))
        for i, (p, params) in enumerate(zip(prompts, sampling, strict=True))
    ]
    results = asyncio.run(collect_all(backend, requests))
    assert all(len(events) == 8 and events[-1].finish_reason == "length" for events in results)
    assert all(e.logprob is not None and len(e.top_logprobs) == 2 for e in results[0])
    # The same seed draws the same tokens again, on the engine's device.
    again = asyncio.run(collect(backend, dataclasses.replace(requests[1], request_id="again")))
    assert [e.token_id for e in again] == [e.token_id for e in results[1]]


def test_lora_adapters_take_the_engine_dtype(make_backend: Any, tiny_model_dir: Path, tmp_path: Path) -> None:
    adapter = make_adapter(tiny_model_dir, tmp_path / "alpha", 1, ["q_proj", "v_proj"])
    backend = make_backend(device="cpu", dtype="bfloat16")
    asyncio.run(backend.load_adapter("alpha", adapter))
    lora = {n: p.dtype for n, p in backend.engine.adapters._peft.named_parameters() if "lora_" in n}
    assert lora and set(lora.values()) == {torch.bfloat16}
    prompt = tuple(random_prompts(1, 10, 10, seed=7)[0])
    events = asyncio.run(
        collect(backend, GenerationRequest("lora", greedy(6), prompt_token_ids=prompt, adapter="alpha"))
    )
    assert len(events) == 6
