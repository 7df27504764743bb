"""The gateway in front of a real serve app, in process (AsgiUpstream), over a fake engine backend.

The gateway never imports the engine; the test (the caller) builds the replica app and hands it
over as an ``Upstream``, exactly as a deployment target would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from llmops.engine.types import Backend, EngineStats, GenerationRequest, HealthStatus, ModelInfo, TokenEvent
from llmops.gateway.upstreams import AsgiUpstream
from llmops.serve import build_app as build_replica_app
from llmops.store.home import Home

pytestmark = pytest.mark.anyio


class EchoBackend(Backend):
    """Answers with the words of the last message, one token per word."""

    def info(self) -> ModelInfo:
        return ModelInfo(model_id="echo", max_model_len=256)

    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        return self._generate(request)

    async def _generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        words = (request.messages[-1].content if request.messages else request.prompt or "").split()
        outputs = words[: request.sampling.max_tokens]
        for count, word in enumerate(outputs, start=1):
            await asyncio.sleep(0.001)
            finish = (
                ("length" if count == request.sampling.max_tokens else "stop")
                if count == len(outputs)
                else None
            )
            yield TokenEvent(request.request_id, count, word + " ", len(words), count, finish_reason=finish)

    async def abort(self, request_id: str) -> None:
        return None

    async def health(self) -> HealthStatus:
        return HealthStatus(ok=True)

    def stats(self) -> EngineStats:
        return EngineStats()


async def test_gateway_in_front_of_an_in_process_serve_app(home: Home, make_key: Any, gw: Any) -> None:
    key = make_key()
    replica = AsgiUpstream(build_replica_app(EchoBackend(), "support-bot"), name="local-replica")
    async with gw.client(home, gw.config(), {"support-bot": [replica]}) as (client, gateway):
        body = gw.chat_body(messages=[{"role": "user", "content": "one two three four"}], max_tokens=3)
        answer = await client.post("/v1/chat/completions", json=body, headers=gw.bearer(key))
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"].split() == ["one", "two", "three"]
        assert answer.json()["usage"]["completion_tokens"] == 3
        streamed = await client.post(
            "/v1/chat/completions", json={**body, "stream": True}, headers=gw.bearer(key)
        )
        assert streamed.text.endswith("data: [DONE]\n\n") and '"usage"' not in streamed.text
        await gateway.health.check_once()
        assert all(r.healthy for r in gateway.table.get("support-bot").replicas())


async def test_a_replica_leaves_rotation_after_failure_threshold_probes_in_a_row(home: Home, gw: Any) -> None:
    sick = gw.MockUpstream("s")
    config = gw.config(health={"failure_threshold": 3, "interval_s": 60})
    async with gw.client(home, config, gw.in_process(**{"support-bot": sick})) as (_, gateway):
        [replica] = gateway.table.get("support-bot").replicas()
        sick.healthy = False
        for _ in range(2):
            await gateway.health.check_once()
            assert replica.healthy  # one or two lost probes do not eject the only replica
        await gateway.health.check_once()
        assert not replica.healthy and replica.probe_failures == 3
        sick.healthy = True
        await gateway.health.check_once()
        assert replica.healthy and replica.probe_failures == 0  # one good probe brings it back
        sick.healthy = False
        await gateway.health.check_once()
        assert replica.healthy and replica.probe_failures == 1  # the count starts again
