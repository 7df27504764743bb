"""Sampling: seeds independent of batch mates, top-k/top-p, penalties, logprobs, stop strings."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import torch
from tests.engine.engine_factories import collect, collect_all, greedy, random_prompts

from llmops.engine.detokenizer import IncrementalDetokenizer
from llmops.engine.output_processor import StopStringMatcher
from llmops.engine.sampler import Sampler
from llmops.engine.sequence import Sequence
from llmops.engine.types import GenerationRequest, SamplingParams


def seq_with(
    params: SamplingParams, prompt: list[int] | None = None, output: list[int] | None = None
) -> Sequence:
    seq = Sequence("s", prompt or [0], params)
    seq.token_ids.extend(output or [])
    return seq


def test_greedy_and_top_k_1_pick_the_argmax() -> None:
    logits = torch.tensor([[0.1, 2.0, 1.9, -1.0], [3.0, 0.0, 0.0, 0.0]])
    sampler = Sampler(seed=0)
    seqs = [seq_with(SamplingParams(temperature=0.0)), seq_with(SamplingParams(temperature=1.5, top_k=1))]
    for _ in range(20):
        assert [t.token_id for t in sampler(logits, seqs)] == [1, 0]


def test_top_p_keeps_only_the_nucleus() -> None:
    # probs ~ [0.64, 0.24, 0.09, 0.03]: top_p 0.7 keeps the first two tokens only.
    logits = torch.log(torch.tensor([[0.64, 0.24, 0.09, 0.03]]))
    sampler = Sampler(seed=1)
    seq = seq_with(SamplingParams(temperature=1.0, top_p=0.7))
    drawn = {sampler(logits, [seq])[0].token_id for _ in range(300)}
    assert drawn == {0, 1}


def test_top_k_limits_the_candidates() -> None:
    logits = torch.zeros(1, 50)
    logits[0, 7] = 0.5
    logits[0, 9] = 0.4
    sampler = Sampler(seed=2)
    seq = seq_with(SamplingParams(temperature=5.0, top_k=2))
    assert {sampler(logits, [seq])[0].token_id for _ in range(200)} == {7, 9}


def test_repetition_presence_and_frequency_penalties() -> None:
    logits = torch.tensor([[2.0, 1.9, -1.0, 1.0]])
    sampler = Sampler()
    plain = seq_with(SamplingParams(temperature=0.0), prompt=[0])
    assert sampler(logits, [plain])[0].token_id == 0
    repeated = seq_with(SamplingParams(temperature=0.0, repetition_penalty=1.2), prompt=[0])
    assert sampler(logits, [repeated])[0].token_id == 1  # 2.0 / 1.2 < 1.9
    # Presence/frequency count output tokens only: prompt token 0 is not penalised...
    presence = seq_with(SamplingParams(temperature=0.0, presence_penalty=0.5), prompt=[0])
    assert sampler(logits, [presence])[0].token_id == 0
    # ...output tokens are: 1 appears twice: 1.9 - 2 * 0.6 - 0 = 0.7; 0 once: 2.0 - 0.6 = 1.4 > 1.0.
    frequency = seq_with(SamplingParams(temperature=0.0, frequency_penalty=0.6), output=[1, 1, 0])
    assert sampler(logits, [frequency])[0].token_id == 0
    both = seq_with(
        SamplingParams(temperature=0.0, frequency_penalty=0.6, presence_penalty=0.5), output=[1, 1, 0]
    )
    assert sampler(logits, [both])[0].token_id == 3  # 0 -> 0.9, 1 -> 0.2, 3 -> 1.0
    assert torch.equal(logits, torch.tensor([[2.0, 1.9, -1.0, 1.0]]))  # the caller's logits are untouched


def test_logprobs_are_the_models_distribution() -> None:
    logits = torch.randn(3, 40, generator=torch.Generator().manual_seed(3))
    sampler = Sampler()
    seqs = [seq_with(SamplingParams(temperature=0.0, logprobs=True, top_logprobs=5)) for _ in range(3)]
    for row, token in enumerate(sampler(logits, seqs)):
        expected = torch.log_softmax(logits[row], dim=-1)
        assert token.logprob == float(expected[token.token_id])
        values = [lp for _, lp in token.top_logprobs]
        assert values == sorted(values, reverse=True) and len(values) == 5
        assert token.top_logprobs[0][0] == token.token_id  # greedy picks the top-1
        assert all(v <= 0 for v in values) and sum(math.exp(v) for v in values) <= 1 + 1e-6


def test_seeded_requests_do_not_depend_on_batch_mates(make_backend: Any) -> None:
    backend = make_backend()
    prompt = tuple(random_prompts(1, 12, 12, seed=5)[0])
    seeded = SamplingParams(max_tokens=16, temperature=1.0, top_p=0.95, seed=1234, ignore_eos=True)
    alone = asyncio.run(collect(backend, GenerationRequest("alone", seeded, prompt_token_ids=prompt)))
    mates = [
        GenerationRequest(
            f"m{i}",
            SamplingParams(max_tokens=20, temperature=1.0, ignore_eos=True),
            prompt_token_ids=tuple(p),
        )
        for i, p in enumerate(random_prompts(6, 4, 30, seed=6))
    ]
    crowded = asyncio.run(
        collect_all(
            backend, [*mates[:3], GenerationRequest("crowd", seeded, prompt_token_ids=prompt), *mates[3:]]
        )
    )[3]
    assert [e.token_id for e in crowded] == [e.token_id for e in alone]
    other_seed = SamplingParams(max_tokens=16, temperature=1.0, top_p=0.95, seed=99, ignore_eos=True)
    other = asyncio.run(collect(backend, GenerationRequest("other", other_seed, prompt_token_ids=prompt)))
    assert [e.token_id for e in other] != [e.token_id for e in alone]


def test_top_k_1_sampling_equals_greedy_end_to_end(make_backend: Any) -> None:
    backend = make_backend()
    prompt = tuple(random_prompts(1, 20, 20, seed=8)[0])
    top1 = SamplingParams(max_tokens=12, temperature=0.8, top_k=1, ignore_eos=True)
    a = asyncio.run(collect(backend, GenerationRequest("g", greedy(12), prompt_token_ids=prompt)))
    b = asyncio.run(collect(backend, GenerationRequest("k", top1, prompt_token_ids=prompt)))
    assert [e.token_id for e in a] == [e.token_id for e in b]


def test_top_logprobs_reach_the_events(make_backend: Any) -> None:
    backend = make_backend()
    params = greedy(6, logprobs=True, top_logprobs=3)
    events = asyncio.run(collect(backend, GenerationRequest("lp", params, prompt="hello")))
    for event in events:
        assert event.logprob is not None and event.logprob <= 0
        assert len(event.top_logprobs) == 3 and event.top_logprobs[0].token_id == event.token_id
        assert event.top_logprobs[0].logprob == event.logprob
        assert event.top_logprobs[0].token == backend.tokenizer.decode([event.token_id])
        assert sum(math.exp(t.logprob) for t in event.top_logprobs) <= 1 + 1e-6


def test_stop_matcher_holds_back_possible_prefixes() -> None:
    matcher = StopStringMatcher(("STOP", "xyz"))
    assert matcher.feed("hello S") == ("hello ", False)  # "S" might start "STOP"
    assert matcher.feed("T") == ("", False)
    assert matcher.feed("ar") == ("STar", False)  # not a stop after all: released
    assert matcher.feed(" x") == (" ", False)
    assert matcher.feed("yz tail") == ("", True)
    nothing = StopStringMatcher(())
    assert nothing.feed("STOP") == ("STOP", False)
    held = StopStringMatcher(("END",))
    assert held.feed("the E") == ("the ", False)
    assert held.flush() == "E"


def test_incremental_detokenizer_handles_multibyte_characters(make_backend: Any) -> None:
    tokenizer = make_backend().tokenizer
    text = "Café 你好 naïve façade"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    detok = IncrementalDetokenizer(tokenizer, [1])
    deltas = [detok.add(i) for i in ids]
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)
    assert "" in deltas  # at least one byte token that completed no character


def test_a_reply_ending_mid_character_is_flushed_as_decoding_all_ids_does(make_backend: Any) -> None:
    tokenizer = make_backend().tokenizer
    ids = tokenizer("naïve", add_special_tokens=False).input_ids
    cut = next(n for n in range(1, len(ids)) if tokenizer.decode(ids[:n]).endswith("\ufffd"))
    detok = IncrementalDetokenizer(tokenizer, [1])
    streamed = "".join(detok.add(i) for i in ids[:cut])
    assert not streamed.endswith("\ufffd")  # held back while the character may still complete
    assert streamed + detok.flush() == tokenizer.decode(ids[:cut])  # what evaluation decodes
    assert detok.flush() == ""


def test_stop_strings_end_generation_without_the_stop_text(make_backend: Any) -> None:
    backend = make_backend()
    prompt = tuple(random_prompts(1, 10, 10, seed=9)[0])
    full = asyncio.run(collect(backend, GenerationRequest("full", greedy(40), prompt_token_ids=prompt)))
    text = "".join(e.text for e in full)
    stop = text[10:13]
    assert len(stop) == 3
    cut = text.index(stop)
    stopped = asyncio.run(
        collect(backend, GenerationRequest("cut", greedy(40, stop=(stop,)), prompt_token_ids=prompt))
    )
    assert "".join(e.text for e in stopped) == text[:cut]
    assert stopped[-1].finish_reason == "stop" and stopped[-1].completion_tokens < 40
    assert [e.token_id for e in stopped] == [e.token_id for e in full][: len(stopped)]
    assert backend.stats().kv_blocks_used == 0
