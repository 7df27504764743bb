"""`llmops requests show` reports generation time and throughput only where they were measured.

A non-streamed answer reaches the gateway whole: it sees no first token, so unless the replica
reports its time to first token (llmops replicas send ``x-llmops-ttft-seconds``), TTFT, generation
time and tokens/s are "not measured" (they once read 0.2 ms and 76,759 tokens/s, and TTFT once read
the whole answer's time). A streamed answer's first token is seen, so all are computed from it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from llmops.security.roles import Role
from llmops.store.home import Home

pytestmark = pytest.mark.anyio


def _field(shown: str, name: str) -> str:
    match = re.search(rf"│ {name}\s+│ ([^│]+?)\s+│", shown)
    assert match, f"{name} not in:\n{shown}"
    return match.group(1)


async def test_requests_show_measures_generation_only_for_streamed_calls(
    home: Home, make_key: Callable[..., str], gw: Any, cli: Any
) -> None:
    key = make_key()
    mock = gw.MockUpstream("r1", token_delay=0.02)
    async with gw.client(home, gw.config(), gw.in_process(**{"support-bot": mock})) as (client, _):
        whole = await client.post(
            "/v1/chat/completions", json=gw.chat_body(max_tokens=8), headers=gw.bearer(key)
        )
        assert whole.status_code == 200, whole.text
        body = gw.chat_body(max_tokens=8, stream=True, stream_options={"include_usage": True})
        streamed = await client.post("/v1/chat/completions", json=body, headers=gw.bearer(key))
        assert streamed.status_code == 200, streamed.text

    shown = cli("requests", "show", whole.headers["x-request-id"])
    assert shown.code == 0, shown.err
    assert float(_field(shown.out, "latency_ms").replace(",", "")) >= 8 * 20
    for name in ("ttft_ms", "generation_ms", "completion_tokens_per_s"):
        assert _field(shown.out, name) == "not measured", name

    shown = cli("requests", "show", streamed.headers["x-request-id"])
    assert shown.code == 0, shown.err
    generation_ms = float(_field(shown.out, "generation_ms").replace(",", ""))
    rate = float(_field(shown.out, "completion_tokens_per_s").replace(",", ""))
    assert generation_ms >= 7 * 20 * 0.9, "seven tokens after the first, 20 ms apart"
    assert 0 < rate <= 8 / (generation_ms / 1000) * 1.01 and rate < 100, "about 50 tokens/s, not thousands"


async def test_a_whole_answer_takes_its_ttft_from_the_replica_report(
    home: Home, make_key: Callable[..., str], gw: Any, cli: Any
) -> None:
    key, developer = make_key(), make_key(Role.DEVELOPER)
    mock = gw.MockUpstream("r1", token_delay=0.02, ttft_seconds=0.05)
    async with gw.client(home, gw.config(), gw.in_process(**{"support-bot": mock})) as (client, _):
        whole = await client.post(
            "/v1/chat/completions", json=gw.chat_body(max_tokens=8), headers=gw.bearer(key)
        )
        assert whole.status_code == 200, whole.text
        metrics = (await client.get("/metrics", headers=gw.bearer(developer))).text

    shown = cli("requests", "show", whole.headers["x-request-id"])
    assert shown.code == 0, shown.err
    latency_ms = float(_field(shown.out, "latency_ms").replace(",", ""))
    ttft_ms = float(_field(shown.out, "ttft_ms").replace(",", ""))
    assert 50 <= ttft_ms < latency_ms - 8 * 20 * 0.9 + 50, "the replica's 50 ms plus the gateway's own time"
    assert 'llmops_gateway_ttft_seconds_count{deployment="support-bot"} 1.0' in metrics
