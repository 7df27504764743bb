"""The async backend: abort and disconnect free blocks, admission control, deadlines, validation,
isolation of a failing request, chat templates, embeddings."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import torch
from tests.engine.engine_factories import collect, collect_all, greedy, random_prompts

from llmops.engine.types import ChatMessage, GenerationRequest, SamplingParams
from llmops.errors import Conflict, InvalidInput, Overloaded


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.005)


def long_request(request_id: str, prompt_len: int = 8, max_tokens: int = 400) -> GenerationRequest:
    prompt = random_prompts(1, prompt_len, prompt_len, seed=hash(request_id) % 1000)[0]
    return GenerationRequest(request_id, greedy(max_tokens), prompt_token_ids=tuple(prompt))


def test_client_disconnect_aborts_and_frees_blocks(make_backend: Any) -> None:
    backend = make_backend()

    async def scenario() -> None:
        stream = backend.generate(long_request("gone"))
        async for event in stream:
            if event.completion_tokens >= 3:
                break
        assert backend.stats().kv_blocks_used > 0
        await stream.aclose()  # what the HTTP layer does when the client goes away
        await wait_until(lambda: backend.stats().kv_blocks_used == 0 and backend.stats().running == 0)

    asyncio.run(scenario())


def test_abort_ends_the_stream_and_frees_blocks_at_once(make_backend: Any) -> None:
    backend = make_backend()

    async def scenario() -> list[Any]:
        events: list[Any] = []

        async def consume() -> None:
            async for event in backend.generate(long_request("victim")):
                events.append(event)

        task = asyncio.create_task(consume())
        await wait_until(lambda: len(events) >= 2)
        await backend.abort("victim")
        assert backend.engine.block_manager.num_used_blocks == 0  # freed before abort() returned
        await asyncio.wait_for(task, 5)
        return events

    events = asyncio.run(scenario())
    assert events[-1].finish_reason == "abort" and events[-1].token_id is None
    assert events[-1].completion_tokens == len(events) - 1 < 400


def test_admission_control_refuses_with_retry_after(make_backend: Any) -> None:
    backend = make_backend(max_num_seqs=1, max_queue_requests=2, max_queue_tokens=40)

    async def scenario() -> None:
        first: list[Any] = []

        async def consume(request: GenerationRequest, sink: list[Any]) -> None:
            async for event in backend.generate(request):
                sink.append(event)

        running = asyncio.create_task(consume(long_request("running"), first))
        await wait_until(lambda: len(first) >= 1)  # it left the waiting queue
        waiting = [asyncio.create_task(consume(long_request(f"w{i}", 10), [])) for i in range(2)]
        await wait_until(lambda: backend.engine.admission.queued_requests == 2)
        with pytest.raises(Overloaded) as by_count:
            await collect(backend, long_request("refused"))
        assert by_count.value.retry_after is not None and by_count.value.retry_after >= 1
        assert by_count.value.status_code == 503
        await backend.abort("w1")
        await wait_until(lambda: backend.engine.admission.queued_requests == 1)
        with pytest.raises(Overloaded, match="prompt tokens"):
            await collect(backend, long_request("too-many-tokens", 31))  # 10 queued + 31 > 40
        for request_id in ("running", "w0"):
            await backend.abort(request_id)
        await asyncio.gather(running, *waiting)
        assert backend.engine.admission.queued_requests == 0 and backend.stats().kv_blocks_used == 0

    asyncio.run(scenario())


def test_deadline_aborts_the_request(make_backend: Any) -> None:
    backend = make_backend()
    request = long_request("late", max_tokens=500)
    past = GenerationRequest("past", greedy(5), prompt_token_ids=(10, 11, 12), deadline=time.monotonic() - 1)
    soon = GenerationRequest(
        request.request_id,
        request.sampling,
        prompt_token_ids=request.prompt_token_ids,
        deadline=time.monotonic() + 0.2,
    )
    late_events, past_events = asyncio.run(collect_all(backend, [soon, past]))
    assert late_events[-1].finish_reason == "abort" and late_events[-1].completion_tokens < 500
    assert past_events[-1].finish_reason == "abort" and past_events[-1].completion_tokens == 0
    assert backend.stats().kv_blocks_used == 0


def test_a_failing_request_does_not_kill_the_loop(make_backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = make_backend()
    prompts = random_prompts(4, 5, 20, seed=7)
    requests = [
        GenerationRequest(f"ok{i}", greedy(10), prompt_token_ids=tuple(p)) for i, p in enumerate(prompts)
    ]
    solo = [asyncio.run(collect(backend, r)) for r in requests]

    runner = backend.engine.runner
    real_execute = runner.execute

    def execute(chunks: list[Any]) -> Any:
        if any(chunk.seq.request_id == "bad" for chunk in chunks):
            raise RuntimeError("injected failure")
        return real_execute(chunks)

    monkeypatch.setattr(runner, "execute", execute)
    bad = GenerationRequest("bad", greedy(10), prompt_token_ids=(20, 21, 22))
    again = [
        GenerationRequest(f"again{i}", r.sampling, prompt_token_ids=r.prompt_token_ids)
        for i, r in enumerate(requests)
    ]
    results = asyncio.run(collect_all(backend, [*again, bad]))
    assert results[-1][-1].finish_reason == "error" and "injected failure" in (results[-1][-1].error or "")
    for expected, got in zip(solo, results[:-1], strict=True):
        assert [e.token_id for e in got] == [e.token_id for e in expected]
        assert got[-1].finish_reason == "length"
    assert asyncio.run(backend.health()).ok
    assert (
        asyncio.run(collect(backend, GenerationRequest("after", greedy(3), prompt="hello")))[-1].finish_reason
        == "length"
    )
    assert backend.stats().kv_blocks_used == 0


@pytest.mark.parametrize(
    ("request_kwargs", "param"),
    [
        ({"prompt_token_ids": tuple(range(6, 6 + 600))}, "prompt"),
        ({"prompt_token_ids": (10, 11), "sampling": SamplingParams(max_tokens=10**12)}, "max_tokens"),
        (
            {"prompt_token_ids": (10, 11), "sampling": SamplingParams(top_logprobs=10**9, logprobs=True)},
            "top_logprobs",
        ),
        ({"prompt_token_ids": (10, 11), "adapter": "nope"}, "model"),
        ({"prompt_token_ids": (10, 10**6)}, "prompt"),
        ({"prompt": "a", "messages": (ChatMessage("user", "b"),)}, "prompt"),
        ({"prompt_token_ids": (10, 11), "sampling": SamplingParams(temperature=-1)}, "temperature"),
        ({"prompt_token_ids": (10, 11), "sampling": SamplingParams(top_p=0)}, "top_p"),
    ],
)
def test_invalid_requests_are_refused_before_allocation(
    make_backend: Any, request_kwargs: dict[str, Any], param: str
) -> None:
    backend = make_backend()
    with pytest.raises(InvalidInput) as error:
        asyncio.run(collect(backend, GenerationRequest("bad", **request_kwargs)))
    assert error.value.param == param and error.value.status_code == 400
    assert backend.engine.admission.queued_requests == 0 and backend.stats().kv_blocks_used == 0


def test_duplicate_request_id_in_flight_is_a_conflict(make_backend: Any) -> None:
    backend = make_backend()

    async def scenario() -> None:
        stream = backend.generate(long_request("same"))
        await stream.__anext__()
        with pytest.raises(Conflict):
            await collect(backend, long_request("same"))
        await stream.aclose()

    asyncio.run(scenario())


def test_chat_messages_use_the_chat_template(make_backend: Any) -> None:
    backend = make_backend()
    messages = (ChatMessage("system", "be brief"), ChatMessage("user", "Café?"))
    events = asyncio.run(collect(backend, GenerationRequest("chat", greedy(4), messages=messages)))
    text = backend.tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in messages], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|assistant|>")
    assert events[-1].prompt_tokens == len(backend.tokenizer(text, add_special_tokens=False).input_ids)
    assert events[-1].completion_tokens == 4


def test_embeddings_are_mean_pooled_last_hidden_states(make_backend: Any, reference_model: Any) -> None:
    backend = make_backend()
    texts = ["hello engine", "Prefix caching shares blocks"]
    vectors = asyncio.run(backend.embed(texts))
    assert len(vectors) == 2 and all(len(v) == 64 for v in vectors)
    assert vectors[0] != vectors[1]
    with torch.no_grad():
        ids = torch.tensor([backend.tokenizer(texts[1]).input_ids])
        expected = reference_model.model(input_ids=ids).last_hidden_state[0].mean(dim=0)
    assert torch.allclose(torch.tensor(vectors[1]), expected, atol=1e-5)
    with pytest.raises(InvalidInput):
        asyncio.run(backend.embed([""]))


def test_info_stats_and_count_tokens(make_backend: Any) -> None:
    backend = make_backend(max_model_len=300)
    info = backend.info()
    assert info.max_model_len == 300 and info.adapters == ()
    assert backend.count_tokens("hello") == len(backend.tokenizer("hello").input_ids)
    stats = backend.stats()
    assert stats.kv_blocks_total == 256 and stats.kv_blocks_used == 0


def test_shutdown_ends_streams_and_a_later_request_restarts_the_loop(make_backend: Any) -> None:
    backend = make_backend()

    async def scenario() -> list[Any]:
        events: list[Any] = []

        async def consume() -> None:
            async for event in backend.generate(long_request("running")):
                events.append(event)

        task = asyncio.create_task(consume())
        await wait_until(lambda: len(events) >= 1)
        await backend.shutdown()
        await asyncio.wait_for(task, 5)
        assert not (await backend.health()).ok
        return events

    events = asyncio.run(scenario())
    assert events[-1].finish_reason == "abort" and events[-1].error == "the engine was shut down"
    again = asyncio.run(collect(backend, GenerationRequest("again", greedy(3), prompt="hi")))
    assert again[-1].finish_reason == "length" and asyncio.run(backend.health()).ok
