"""The gateway's OpenAI answers validate against the official ``openai`` package's types, strictly:
what it adds on the way (usage accounting, cache hits, its own model list) keeps the shapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from openai.types import Completion, CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel
from tests.reliability.conftest import FakeBackend

from llmops.gateway.upstreams import AsgiUpstream
from llmops.serve import ServeConfig, build_app
from llmops.store.home import Home

pytestmark = pytest.mark.anyio


def _check(model: type[BaseModel], body: dict[str, Any]) -> None:
    parsed = model.model_validate(body, strict=True)
    assert not parsed.model_extra, parsed.model_extra  # no field the official type lacks
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    assert required <= set(body), required - set(body)


async def test_gateway_answers_have_the_official_openai_shapes(
    home: Home, make_key: Callable[..., str], gw: Any
) -> None:
    replica = build_app(FakeBackend(delay=0), "support-bot", ServeConfig())
    upstreams = {"support-bot": [AsgiUpstream(replica, name="support-bot-replica")]}
    config = gw.config(gw.deployment(), cache={"enabled": True})
    headers = gw.bearer(make_key())
    async with gw.client(home, config, upstreams) as (client, _):
        chat = gw.chat_body(max_tokens=4, temperature=0)
        for attempt in ("answered", "cached"):
            answer = await client.post("/v1/chat/completions", json=chat, headers=headers)
            assert answer.status_code == 200, (attempt, answer.text)
            _check(ChatCompletion, answer.json())
        assert answer.headers.get("x-llmops-cache") == "hit"  # the second came from the cache
        completion = {"model": "support-bot", "prompt": "hello there", "max_tokens": 4}
        answer = await client.post("/v1/completions", json=completion, headers=headers)
        _check(Completion, answer.json())
        embeddings = {"model": "support-bot", "input": ["a b", "c"]}
        answer = await client.post("/v1/embeddings", json=embeddings, headers=headers)
        _check(CreateEmbeddingResponse, answer.json())
        cards = (await client.get("/v1/models", headers=headers)).json()
        assert cards["object"] == "list" and cards["data"]
        for card in cards["data"]:
            _check(Model, card)
        streamed = await client.post("/v1/chat/completions", json={**chat, "stream": True}, headers=headers)
        events = [
            line.removeprefix("data: ") for line in streamed.text.splitlines() if line.startswith("data: ")
        ]
        assert events[-1] == "[DONE]" and len(events) > 2
        for event in events[:-1]:
            _check(ChatCompletionChunk, json.loads(event))
