"""Greedy output of the engine equals transformers' ``generate(do_sample=False)`` token for token.

fp32 on CPU, one thread. Alone (one sequence, its decode a 1-row batch like generate's) the logits
are bitwise equal: the chosen-token logprob matches exactly, even with the prompt cut into chunks.
With concurrent requests exact logits are impossible: MKL's sgemm picks a different kernel (and
reduction order) by the number of rows M (M=1 runs a GEMV, 2-4 and >=5 other blocked kernels), so
a row's result depends on how many rows share the GEMM; differences are ~1e-7. There the tokens
must still be equal and logprobs agree within 1e-4 (stated tolerance).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.engine.engine_factories import (
    VOCAB_SIZE,
    collect,
    collect_all,
    greedy,
    random_prompts,
    reference_greedy,
)

from llmops.engine.types import GenerationRequest

CONCURRENT_TOLERANCE = 1e-4


def reference_logprobs(logits: torch.Tensor, tokens: list[int]) -> list[float]:
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return [float(logprobs[i, token]) for i, token in enumerate(tokens)]


def test_alone_equals_generate_bitwise(make_backend: Any, reference_model: Any) -> None:
    prompt = random_prompts(1, 40, 40, seed=1)[0]
    expected, logits = reference_greedy(reference_model, prompt, 24)
    for budget in (256, 16):  # whole prompt in one step; prompt cut into 16-token chunks
        backend = make_backend(max_num_batched_tokens=budget, max_num_seqs=16)
        request = GenerationRequest("alone", greedy(24, logprobs=True), prompt_token_ids=tuple(prompt))
        events = asyncio.run(collect(backend, request))
        assert [e.token_id for e in events] == expected
        assert [e.logprob for e in events] == reference_logprobs(logits, expected)  # exact, no tolerance
        assert events[-1].finish_reason == "length" and events[-1].completion_tokens == 24


@pytest.mark.slow
@pytest.mark.parametrize("decode_kernel", [True, False], ids=["decode-kernel", "gather-sdpa"])
def test_32_mixed_concurrent_requests_equal_generate(
    make_backend: Any, reference_model: Any, decode_kernel: bool
) -> None:
    prompts = random_prompts(32, 3, 60, seed=2)
    lengths = [5 + (i * 7) % 16 for i in range(32)]  # 5..20 new tokens: requests leave at different steps
    backend = make_backend(max_num_batched_tokens=64, max_num_seqs=32, decode_kernel=decode_kernel)
    requests = [
        GenerationRequest(f"r{i}", greedy(n, logprobs=True), prompt_token_ids=tuple(p))
        for i, (p, n) in enumerate(zip(prompts, lengths, strict=True))
    ]
    results = asyncio.run(collect_all(backend, requests))
    # Batched: far fewer steps than the 400 generated tokens.
    assert backend.stats().steps < sum(lengths) // 4
    for prompt, n, events in zip(prompts, lengths, results, strict=True):
        expected, logits = reference_greedy(reference_model, prompt, n)
        assert [e.token_id for e in events] == expected
        ours = torch.tensor([e.logprob for e in events])
        assert torch.allclose(
            ours, torch.tensor(reference_logprobs(logits, expected)), atol=CONCURRENT_TOLERANCE
        )


@pytest.mark.slow
def test_prefix_caching_hits_and_still_equals_generate(make_backend: Any, reference_model: Any) -> None:
    shared = random_prompts(1, 40, 40, seed=3)[0]
    tails = random_prompts(6, 1, 12, seed=4)
    prompts = [shared + tail for tail in tails]
    backend = make_backend(block_size=8, enable_prefix_caching=True)
    first = asyncio.run(
        collect(backend, GenerationRequest("warm", greedy(8), prompt_token_ids=tuple(prompts[0])))
    )
    assert first[-1].cached_prompt_tokens == 0
    requests = [
        GenerationRequest(f"p{i}", greedy(12), prompt_token_ids=tuple(p)) for i, p in enumerate(prompts)
    ]
    results = asyncio.run(collect_all(backend, requests))
    for prompt, events in zip(prompts, results, strict=True):
        assert events[-1].cached_prompt_tokens == 40  # five full 8-token blocks of the shared prefix
        assert [e.token_id for e in events] == reference_greedy(reference_model, prompt, 12)[0]
    stats = backend.stats()
    assert (
        stats.prefix_cache_hits >= 40 * len(prompts) and stats.prefix_cache_queries > stats.prefix_cache_hits
    )


def small_config(architecture: str) -> Any:
    from transformers import MistralConfig, Qwen2Config

    common = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": VOCAB_SIZE,
        "max_position_embeddings": 512,
        "initializer_range": 0.08,
    }
    return {"qwen2": Qwen2Config, "mistral": MistralConfig}[architecture](**common)


@pytest.mark.parametrize("architecture", ["qwen2", "mistral"])
def test_other_architectures_equal_generate(
    architecture: str, make_backend: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path)
    torch.manual_seed(5)
    AutoModelForCausalLM.from_config(small_config(architecture)).save_pretrained(tmp_path)
    reference = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True).eval()
    backend = make_backend(model_dir=tmp_path, max_num_batched_tokens=32, max_num_seqs=8)
    prompts = random_prompts(4, 10, 50, seed=21)
    requests = [
        GenerationRequest(f"a{i}", greedy(12), prompt_token_ids=tuple(p)) for i, p in enumerate(prompts)
    ]
    results = asyncio.run(collect_all(backend, requests))
    for prompt, events in zip(prompts, results, strict=True):
        assert [e.token_id for e in events] == reference_greedy(reference, prompt, 12)[0]


def test_bfloat16_weights_and_cache_generate(make_backend: Any) -> None:
    backend = make_backend(dtype="bfloat16")
    assert backend.engine.runner.key_cache.dtype == torch.bfloat16
    events = asyncio.run(collect(backend, GenerationRequest("bf16", greedy(6), prompt="hello there")))
    assert events[-1].finish_reason == "length" and all(e.token_id is not None for e in events)


@pytest.mark.slow
def test_preemption_under_kv_pressure_still_equals_generate(make_backend: Any, reference_model: Any) -> None:
    # 14 blocks of 8 tokens; six requests of ~40 tokens each need 30 blocks: some are preempted
    # and recomputed (their committed blocks often come back from the prefix cache).
    backend = make_backend(num_kv_blocks=14, block_size=8, max_num_batched_tokens=64, max_num_seqs=8)
    prompts = random_prompts(6, 18, 22, seed=31)
    requests = [
        GenerationRequest(f"q{i}", greedy(18), prompt_token_ids=tuple(p)) for i, p in enumerate(prompts)
    ]
    results = asyncio.run(collect_all(backend, requests))
    assert backend.stats().preemptions_total > 0
    for prompt, events in zip(prompts, results, strict=True):
        assert [e.token_id for e in events] == reference_greedy(reference_model, prompt, 18)[0]
    assert backend.stats().kv_blocks_used == 0
