"""Load shedding: past ``http.max_in_flight`` API requests a worker answers 503 with Retry-After at
once; a request whose body has not fully arrived holds no place (slow loris)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmops.store.home import Home

pytestmark = pytest.mark.anyio


async def test_requests_past_max_in_flight_get_503_at_once(home: Home, make_key: Any, gw: Any) -> None:
    key = make_key()
    slow = gw.MockUpstream("slow", first_delay=1.0)
    config = gw.config(http={"max_in_flight": 2})
    async with gw.client(home, config, gw.in_process(**{"support-bot": slow})) as (client, gateway):
        answers = await asyncio.gather(
            *(
                client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
                for _ in range(4)
            )
        )
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 200, 503, 503], [a.text for a in answers]
        refused = next(a for a in answers if a.status_code == 503)
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "gateway_overloaded"
        assert gateway.metrics.shed._value.get() == 2
        again = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
        assert again.status_code == 200, again.text  # the places were given back


async def test_a_body_still_arriving_holds_no_place(home: Home, make_key: Any, gw: Any) -> None:
    key = make_key()
    config = gw.config(http={"max_in_flight": 1})
    stalled = asyncio.Event()

    async def never_finishing_body() -> Any:
        yield b'{"model":'
        stalled.set()
        await asyncio.sleep(3600)

    async with gw.client(home, config, gw.in_process(**{"support-bot": gw.MockUpstream("a")})) as (
        client,
        _,
    ):
        headers = {**gw.bearer(key), "content-type": "application/json"}
        loris = asyncio.create_task(
            client.post("/v1/chat/completions", content=never_finishing_body(), headers=headers)
        )
        await asyncio.wait_for(stalled.wait(), 10)
        answer = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
        assert answer.status_code == 200, answer.text
        loris.cancel()
