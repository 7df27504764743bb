"""Real replica responses validate against the official ``openai`` package's types, strictly."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from openai.types import Completion, CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel
from tests.reliability.conftest import FakeBackend

from llmops.serve import ServeConfig, build_app


def _check(model: type[BaseModel], body: dict[str, Any]) -> None:
    parsed = model.model_validate(body, strict=True)
    assert not parsed.model_extra, parsed.model_extra  # no field the official type lacks
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    assert required <= set(body), required - set(body)


@pytest.mark.anyio
async def test_replica_answers_have_the_official_openai_shapes(anyio_backend: str) -> None:
    app = build_app(FakeBackend(delay=0), "fake-model", ServeConfig())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
        chat = {
            "model": "fake-model",
            "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": 4,
        }
        _check(ChatCompletion, (await client.post("/v1/chat/completions", json=chat)).json())
        completion = {"model": "fake-model", "prompt": "hello there", "max_tokens": 4}
        _check(Completion, (await client.post("/v1/completions", json=completion)).json())
        embeddings = {"model": "fake-model", "input": ["a b", "c"]}
        _check(CreateEmbeddingResponse, (await client.post("/v1/embeddings", json=embeddings)).json())
        for card in (await client.get("/v1/models")).json()["data"]:
            Model.model_validate(card, strict=True)
        streamed = await client.post("/v1/chat/completions", json={**chat, "stream": True})
        events = [
            line.removeprefix("data: ") for line in streamed.text.splitlines() if line.startswith("data: ")
        ]
        assert events[-1] == "[DONE]"
        for event in events[:-1]:
            _check(ChatCompletionChunk, json.loads(event))
