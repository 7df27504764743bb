"""OpenAIBackend against a fake OpenAI-compatible server on an ephemeral loopback port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from tests.engine.fake_openai_server import WORDS, FakeOpenAI, serving

from llmops.engine.openai_backend import OpenAIBackend
from llmops.engine.types import ChatMessage, GenerationRequest, SamplingParams, TokenEvent
from llmops.errors import InvalidInput, Overloaded, UpstreamError


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    app = FakeOpenAI()
    with serving(app) as url:
        yield app, url


async def run(backend: OpenAIBackend, request: GenerationRequest) -> list[TokenEvent]:
    try:
        return [event async for event in backend.generate(request)]
    finally:
        await backend.shutdown()


def test_completion_stream_maps_to_token_events(fake: tuple[FakeOpenAI, str]) -> None:
    app, url = fake
    backend = OpenAIBackend(url + "/v1", "fake", api_key="k")
    sampling = SamplingParams(max_tokens=4, temperature=0.0, top_k=5, seed=3, stop=("x",), ignore_eos=True)
    events = asyncio.run(run(backend, GenerationRequest("c1", sampling, prompt="hi there")))
    assert "".join(e.text for e in events) == "".join(WORDS[:4])
    assert [e.completion_tokens for e in events[:-1]] == [1, 2, 3]
    last = events[-1]
    assert (
        last.finish_reason == "length"
        and last.prompt_tokens == len("hi there")
        and last.completion_tokens == 4
    )
    body = app.bodies[-1]
    assert body["prompt"] == "hi there" and body["stream"] is True and body["model"] == "fake"
    assert body["top_k"] == 5 and body["seed"] == 3 and body["stop"] == ["x"] and body["ignore_eos"] is True
    assert "repetition_penalty" not in body  # only non-default extras are sent


def test_chat_and_token_id_prompts_use_their_endpoints(fake: tuple[FakeOpenAI, str]) -> None:
    app, url = fake
    backend = OpenAIBackend(url, "fake")
    chat = GenerationRequest(
        "c2", SamplingParams(max_tokens=3), messages=(ChatMessage("user", "hi"),), adapter="tuned"
    )
    events = asyncio.run(run(backend, chat))
    assert "".join(e.text for e in events) == "".join(WORDS[:3]) and events[-1].finish_reason == "length"
    assert app.bodies[-1]["messages"] == [{"role": "user", "content": "hi"}]
    assert app.bodies[-1]["model"] == "tuned"  # an adapter is a model name upstream (vLLM LoRA)
    asyncio.run(
        run(backend, GenerationRequest("c3", SamplingParams(max_tokens=2), prompt_token_ids=(5, 6, 7)))
    )
    assert app.bodies[-1]["prompt"] == [5, 6, 7]


def test_upstream_errors_keep_their_meaning(fake: tuple[FakeOpenAI, str]) -> None:
    _, url = fake
    with pytest.raises(Overloaded) as overloaded:
        asyncio.run(run(OpenAIBackend(url, "overloaded"), GenerationRequest("e1", prompt="x")))
    assert overloaded.value.retry_after == 7
    with pytest.raises(InvalidInput) as invalid:
        asyncio.run(run(OpenAIBackend(url, "bad"), GenerationRequest("e2", prompt="x")))
    assert invalid.value.param == "max_tokens"
    events = asyncio.run(
        run(OpenAIBackend(url, "broken"), GenerationRequest("e3", SamplingParams(max_tokens=3), prompt="x"))
    )
    assert events[-1].finish_reason == "error" and "before a finish reason" in (events[-1].error or "")


def test_connection_failure_is_an_upstream_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = OpenAIBackend(f"http://127.0.0.1:{port}", "fake", timeout=5)
    with pytest.raises(UpstreamError, match="cannot connect"):
        asyncio.run(run(backend, GenerationRequest("down", prompt="x")))
    health = asyncio.run(backend.health())
    assert not health.ok


def test_abort_ends_a_quiet_stream_at_once(fake: tuple[FakeOpenAI, str]) -> None:
    _, url = fake
    backend = OpenAIBackend(url, "slow")

    async def scenario() -> list[TokenEvent]:
        events: list[TokenEvent] = []

        async def consume() -> None:
            async for event in backend.generate(GenerationRequest("slow1", prompt="x")):
                events.append(event)

        task = asyncio.create_task(consume())
        while len(events) < 2:
            await asyncio.sleep(0.01)
        assert backend.stats().running == 1
        await backend.abort("slow1")
        await asyncio.wait_for(task, 1.0)
        await backend.shutdown()
        return events

    events = asyncio.run(scenario())
    assert events[-1].finish_reason == "abort" and backend.stats().running == 0


def test_health_models_and_embeddings(fake: tuple[FakeOpenAI, str]) -> None:
    _, url = fake
    backend = OpenAIBackend(url, "fake")

    async def scenario() -> tuple[Any, Any, Any]:
        try:
            return await backend.health(), await backend.refresh_info(), await backend.embed(["ab", "abcd"])
        finally:
            await backend.shutdown()

    health, info, vectors = asyncio.run(scenario())
    assert health.ok and info.max_model_len == 2048 and info.model_id == "fake"
    assert vectors == [[2.0, 1.0], [4.0, 1.0]]
