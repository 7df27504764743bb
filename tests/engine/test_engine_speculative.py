"""Speculative decoding: greedy output equals the target alone, sampling keeps its distribution.

Four drafts on the tiny target (2 layers): the target itself (every draft kept), the target with
slightly perturbed weights (a close approximation, as a distilled student is: kept often, not
always), a smaller model made of the target's first layer (kept sometimes) and a random 1-layer
model of another width (deliberately bad: nearly always rejected). So the accept, partial and
reject paths and the KV rollback of both caches all run, under continuous batching.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.engine.engine_factories import (
    VOCAB_SIZE,
    build_model,
    collect_all,
    greedy,
    random_prompts,
    reference_greedy,
)

from llmops.engine.config import EngineConfig
from llmops.engine.device import resolve_placement
from llmops.engine.llm_engine import LLMEngine
from llmops.engine.rejection_sampler import accept_greedy, accept_sampled
from llmops.engine.sequence import Sequence
from llmops.engine.transformers_backend import load_causal_lm
from llmops.engine.types import GenerationRequest, SamplingParams
from llmops.errors import InvalidInput

CPU_FP32 = resolve_placement("cpu", "float32")

# Chi-square critical value for 7 degrees of freedom at p = 0.001 (8 categories).
CHI2_CRITICAL_7DOF = 24.32


def _save_with_tokenizer(model: Any, directory: Path, tokenizer_dir: Path) -> Path:
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(directory)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def drafts(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    smaller = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True)
    smaller.model.layers = smaller.model.layers[:1]
    smaller.config.num_hidden_layers = 1
    torch.manual_seed(7)
    bad = LlamaForCausalLM(
        LlamaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, vocab_size=VOCAB_SIZE, max_position_embeddings=512,
            bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.08,
        )
    )  # fmt: skip
    near = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True)
    noise = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in near.parameters():
            param.add_(torch.randn(param.shape, generator=noise) * 0.003)
    root = tmp_path_factory.mktemp("drafts")
    return {
        "same": tiny_model_dir,
        "near": _save_with_tokenizer(near, root / "near", tiny_model_dir),
        "smaller": _save_with_tokenizer(smaller, root / "smaller", tiny_model_dir),
        "bad": _save_with_tokenizer(bad, root / "bad", tiny_model_dir),
    }


@pytest.fixture(scope="module")
def expected_32(reference_model: Any) -> list[tuple[list[int], list[int]]]:
    """32 prompts and the target's own greedy continuation of each (transformers ``generate``)."""
    prompts = random_prompts(32, 3, 50, seed=12)
    lengths = [6 + (i * 5) % 17 for i in range(32)]
    return [(p, reference_greedy(reference_model, p, n)[0]) for p, n in zip(prompts, lengths, strict=True)]


@pytest.mark.slow
@pytest.mark.parametrize("draft", ["same", "near", "smaller", "bad"])
def test_32_concurrent_greedy_equal_the_target_alone(
    draft: str, drafts: dict[str, Path], expected_32: list[tuple[list[int], list[int]]], make_backend: Any
) -> None:
    backend = make_backend(
        speculative={"draft": str(drafts[draft]), "k": 4}, max_num_batched_tokens=64, max_num_seqs=32
    )
    requests = [
        GenerationRequest(f"s{i}", greedy(len(out), logprobs=True), prompt_token_ids=tuple(prompt))
        for i, (prompt, out) in enumerate(expected_32)
    ]
    results = asyncio.run(collect_all(backend, requests))
    for (_, expected), events in zip(expected_32, results, strict=True):
        assert [e.token_id for e in events] == expected
        assert [e.completion_tokens for e in events] == list(range(1, len(expected) + 1))
        assert all(e.logprob is not None and e.logprob <= 0 for e in events)
    stats = backend.stats()
    assert stats.spec_verifications_total > 0
    accepted, proposed = stats.spec_accepted_tokens_total, stats.spec_proposed_tokens_total
    if draft == "same":
        assert accepted == proposed  # every draft is the target's own choice
    elif draft == "near":
        assert 0.3 * proposed < accepted < proposed
    elif draft == "smaller":
        assert 0 < accepted < 0.3 * proposed
    else:
        assert accepted < 0.05 * proposed
    assert stats.spec_emitted_tokens_total == accepted + stats.spec_verifications_total
    # Both caches are empty again: rejected slots were rolled back, finished sequences freed.
    assert stats.kv_blocks_used == 0
    assert backend.engine.speculator.block_manager.num_used_blocks == 0


def test_speculation_takes_fewer_steps_and_honours_max_tokens(
    drafts: dict[str, Path], make_backend: Any, reference_model: Any
) -> None:
    prompt = random_prompts(1, 20, 20, seed=3)[0]
    backend = make_backend(speculative={"draft": str(drafts["same"]), "k": 4})
    request = GenerationRequest("one", greedy(23), prompt_token_ids=tuple(prompt))
    events = asyncio.run(collect_all(backend, [request]))[0]
    assert [e.token_id for e in events] == reference_greedy(reference_model, prompt, 23)[0]
    assert events[-1].finish_reason == "length" and events[-1].completion_tokens == 23
    # 1 prefill step, then 5 tokens per step with a perfect draft: 23 tokens in 1 + ceil(22 / 5) steps.
    assert backend.stats().steps == 1 + 5


def test_a_draft_with_another_vocabulary_is_refused(
    tiny_model_dir: Path, tmp_path: Path, make_backend: Any
) -> None:
    from transformers import AutoTokenizer

    other_size = _save_with_tokenizer(build_model(VOCAB_SIZE + 16), tmp_path / "wide", tiny_model_dir)
    with pytest.raises(InvalidInput, match="vocabulary") as raised:
        make_backend(speculative={"draft": str(other_size), "k": 2})
    assert raised.value.param == "speculative.draft"
    other_tokens = tmp_path / "tokens"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.add_tokens(["<|extra|>"])
    tokenizer.save_pretrained(other_tokens)
    build_model(VOCAB_SIZE).save_pretrained(other_tokens)
    with pytest.raises(InvalidInput, match="different vocabulary"):
        make_backend(speculative={"draft": str(other_tokens), "k": 2})
    with pytest.raises(InvalidInput, match="not a model directory"):
        make_backend(speculative={"draft": str(tmp_path / "missing"), "k": 2})


def test_greedy_acceptance_rule() -> None:
    logits = torch.zeros(4, 5)
    for row, best in enumerate([3, 1, 4, 0]):
        logits[row, best] = 1.0
    assert accept_greedy([3, 1, 4], logits) == [3, 1, 4, 0]  # all kept, plus the free token
    assert accept_greedy([3, 2, 4], logits) == [3, 1]  # stops at the first mismatch
    assert accept_greedy([0, 1, 4], logits) == [3]


def _chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


def test_rejection_sampling_keeps_the_target_distribution() -> None:
    """First and second emitted tokens follow p (not q) over 8 tokens; 20k trials, fixed seed."""
    rng = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(3, 8, generator=rng) * 1.5, dim=-1)  # target at 3 positions
    q = torch.softmax(torch.randn(2, 8, generator=rng) * 1.5, dim=-1)  # draft at 2 positions
    first, second = torch.zeros(8), torch.zeros(8)
    kept_all = 0
    for _ in range(20_000):
        d1 = int(torch.multinomial(q[0], 1, generator=rng))
        d2 = int(torch.multinomial(q[1], 1, generator=rng))
        emitted = accept_sampled([d1, d2], q, p, rng)
        first[emitted[0]] += 1
        # p[1] stands for the target after d1 whatever d1 is: a second token (d1 was kept) follows it.
        if len(emitted) > 1:
            second[emitted[1]] += 1
        kept_all += len(emitted) == 3
    assert 0 < kept_all < 20_000
    assert _chi_square(first, p[0]) < CHI2_CRITICAL_7DOF
    assert _chi_square(second, p[1]) < CHI2_CRITICAL_7DOF
    # The same test tells the draft's distribution apart: it has the power to fail.
    assert _chi_square(first, q[0]) > 10 * CHI2_CRITICAL_7DOF


@pytest.mark.slow
def test_sampled_tokens_through_the_engine_follow_the_target(tmp_path: Path) -> None:
    """The engine with a bad draft: the marginal of the 2nd sampled token (the first one speculation
    produces) matches the exact marginal of the target alone over an 8-token vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    def tiny(seed: int, layers: int) -> Path:
        torch.manual_seed(seed)
        config = LlamaConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=layers, num_attention_heads=2,
            num_key_value_heads=1, vocab_size=8, max_position_embeddings=64, initializer_range=0.3,
            bos_token_id=1, eos_token_id=2, pad_token_id=0,
        )  # fmt: skip
        LlamaForCausalLM(config).save_pretrained(tmp_path / str(seed))
        return tmp_path / str(seed)

    torch.set_num_threads(1)
    target, draft = load_causal_lm(tiny(1, 2), CPU_FP32), load_causal_lm(tiny(2, 1), CPU_FP32)
    config = EngineConfig(
        threads=1, num_kv_blocks=2048, block_size=4, max_num_seqs=256, max_num_batched_tokens=1024,
        seed=3, speculative={"draft": "unused", "k": 2},
    )  # fmt: skip
    engine = LLMEngine(target, config, draft_model=draft)
    prompt, trials = [3, 5, 4], 4000
    sampling = SamplingParams(max_tokens=3, temperature=1.0, ignore_eos=True)
    for i in range(trials):
        engine.add(Sequence(f"t{i}", list(prompt), sampling))
    second = torch.zeros(8)
    outputs: dict[str, list[int]] = {}
    while engine.has_work():
        for out in engine.step():
            outputs.setdefault(out.request_id, []).append(int(out.token_id))
    for tokens in outputs.values():
        assert len(tokens) == 3
        second[tokens[1]] += 1
    assert engine.stats().spec_verifications_total >= trials
    assert 0 < engine.stats().spec_accepted_tokens_total < engine.stats().spec_proposed_tokens_total

    def marginal_of_second(model: Any) -> torch.Tensor:
        with torch.no_grad():
            plain = type(model).from_pretrained(model.name_or_path, attn_implementation="sdpa").eval()
            first = torch.softmax(plain(torch.tensor([prompt])).logits[0, -1], -1)
            after = torch.stack(
                [torch.softmax(plain(torch.tensor([[*prompt, t]])).logits[0, -1], -1) for t in range(8)]
            )
        return first @ after

    assert _chi_square(second, marginal_of_second(target)) < CHI2_CRITICAL_7DOF
    assert _chi_square(second, marginal_of_second(draft)) > CHI2_CRITICAL_7DOF


def test_a_stop_token_among_kept_drafts_ends_the_reply_there(
    drafts: dict[str, Path], make_backend: Any, reference_model: Any
) -> None:
    prompt = random_prompts(1, 12, 12, seed=8)[0]
    expected = reference_greedy(reference_model, prompt, 12)[0]
    stop = expected[3]  # the 4th token: inside the first verified draft (the 1st comes from prefill)
    cut = expected.index(stop) + 1
    backend = make_backend(speculative={"draft": str(drafts["same"]), "k": 4})
    request = GenerationRequest("stop", greedy(12, stop_token_ids=(stop,)), prompt_token_ids=tuple(prompt))
    events = asyncio.run(collect_all(backend, [request]))[0]
    assert [e.token_id for e in events] == expected[:cut]
    assert events[-1].finish_reason == "stop"
    assert backend.stats().kv_blocks_used == 0
    assert backend.engine.speculator.block_manager.num_used_blocks == 0
