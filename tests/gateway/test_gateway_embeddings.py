"""``/v1/embeddings`` through the gateway over real HTTP, with the official client: the same keys,
limits, budgets, request log and metrics as chat."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select
from tests.serve.conftest import FakeBackend

from llmops.gateway.app import create_app
from llmops.security.roles import Role
from llmops.serve import build_app as build_replica_app
from llmops.store.home import Home
from llmops.store.schema import GatewayRequest


def _rows(home: Home, expected: int, timeout: float = 5.0) -> list[GatewayRequest]:
    deadline = time.monotonic() + timeout
    while True:
        with home.store.read() as session:
            rows = list(session.execute(select(GatewayRequest).order_by(GatewayRequest.ts)).scalars())
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


@pytest.mark.slow
def test_openai_client_embeddings_through_the_gateway(home: Home, make_key: Any, gw: Any) -> None:
    key = make_key(name="app")
    limited = make_key(name="one-a-minute", rpm=1)
    broke = make_key(name="broke", budget_usd=0.000001)
    with gw.serve(build_replica_app(FakeBackend(), "support-bot")) as replica:
        config = gw.config(gw.deployment("support-bot", upstreams=[{"url": replica}]))
        with gw.serve(create_app(config, home)) as gateway_url:
            client = openai.OpenAI(base_url=gateway_url + "/v1", api_key=key, max_retries=0)
            answer = client.embeddings.create(model="support-bot", input=["one two", "three"], user="u1")
            assert [d.embedding for d in answer.data] == [[2.0, 1.0, 0.5], [1.0, 1.0, 0.5]]
            assert answer.usage.prompt_tokens == 3
            floats = client.embeddings.create(model="support-bot", input="a b c", encoding_format="float")
            assert floats.data[0].embedding == [3.0, 1.0, 0.5]
            with pytest.raises(openai.AuthenticationError):
                stranger = openai.OpenAI(base_url=gateway_url + "/v1", api_key="sk-wrong", max_retries=0)
                stranger.embeddings.create(model="support-bot", input="x")
            with pytest.raises(openai.BadRequestError, match="input"):
                client.embeddings.create(model="support-bot", input=[])
            one = openai.OpenAI(base_url=gateway_url + "/v1", api_key=limited, max_retries=0)
            one.embeddings.create(model="support-bot", input="x")
            with pytest.raises(openai.RateLimitError):
                one.embeddings.create(model="support-bot", input="x")
            with pytest.raises(openai.RateLimitError, match="budget"):
                openai.OpenAI(base_url=gateway_url + "/v1", api_key=broke, max_retries=0).embeddings.create(
                    model="support-bot", input="x " * 100
                )
            admin = gw.bearer(make_key(name="ops", role=Role.ADMIN))
            metrics = httpx.get(gateway_url + "/metrics", headers=admin).text
            assert 'llmops_gateway_requests_total{deployment="support-bot",status="200"} 3.0' in metrics
    rows = _rows(home, 6)
    done = [r for r in rows if r.status == 200]
    assert len(done) == 3 and {r.endpoint for r in done} == {"embeddings"}
    first = next(r for r in done if r.user == "u1")
    assert first.prompt == "one two\nthree" and first.prompt_tokens == 3 and first.completion_tokens == 0
    assert first.completion is None and first.cost_usd == pytest.approx(3 * 1.0 / 1000)
    assert sorted(r.status for r in rows if r.status != 200) == [400, 429, 429]  # a bad key is no row
