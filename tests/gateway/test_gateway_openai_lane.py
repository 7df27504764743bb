"""The OpenAI calls' ASGI lane answers as the FastAPI routes of the same paths do.

The lane serves ``POST /v1/chat/completions`` (and completions, embeddings) of an app at the root;
the same app mounted under a prefix is served by its FastAPI routes. Both must give the same
statuses, bodies and headers, for answers and for refusals.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from llmops.gateway.app import build_app
from llmops.gateway.service import build_gateway
from llmops.store.home import Home

pytestmark = pytest.mark.anyio
SAME_HEADERS = ("content-type", "retry-after", "x-ratelimit-limit-name", "content-security-policy")


def _auth(gw: Any, key: str | None) -> dict[str, str]:
    return gw.bearer(key) if key else {}


async def test_lane_and_fastapi_routes_answer_alike(home: Home, make_key: Any, gw: Any) -> None:
    key = make_key()
    # one limited key each (a limit is shared), their names the only difference in the 429s
    lane_limited, routes_limited = (
        make_key(rpm=1, name="limited-lane"),
        make_key(rpm=1, name="limited-routes"),
    )
    upstreams = gw.in_process(**{"support-bot": gw.MockUpstream("a")})
    gateway = build_gateway(gw.config(), home, in_process=upstreams, active_health_checks=False)
    app = build_app(gateway)
    mounted = Starlette(routes=[Mount("/gw", app=app)])  # not at the root: served by FastAPI's routes
    completion = {"model": "support-bot", "prompt": "hi", "max_tokens": 3}
    embedding = {"model": "support-bot", "input": "hi", "stream": True}
    calls: list[tuple[str, dict[str, Any], str | None, str | None]] = [
        ("/v1/chat/completions", gw.chat_body(), key, key),
        ("/v1/completions", completion, key, key),
        ("/v1/chat/completions", gw.chat_body(), None, None),  # no key: 401
        ("/v1/chat/completions", gw.chat_body(), "sk-llmops-" + "x" * 40, "sk-llmops-" + "x" * 40),
        ("/v1/chat/completions", gw.chat_body(model="nope"), key, key),  # 404
        ("/v1/chat/completions", {"model": "support-bot", "messages": []}, key, key),  # 400
        ("/v1/embeddings", embedding, key, key),  # 400: embeddings are not streamed
        ("/v1/chat/completions", gw.chat_body(), lane_limited, routes_limited),  # 200
        ("/v1/chat/completions", gw.chat_body(), lane_limited, routes_limited),  # 429, Retry-After
    ]
    await gateway.start()
    try:
        lane = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")
        routes = httpx.AsyncClient(transport=httpx.ASGITransport(app=mounted), base_url="http://gateway/gw")
        async with lane, routes:
            answers = []
            for path, body, lane_key, routes_key in calls:
                via_lane = await lane.post(path, json=body, headers=gw.bearer(lane_key) if lane_key else {})
                via_routes = await routes.post(
                    path, json=body, headers=gw.bearer(routes_key) if routes_key else {}
                )
                answers.append((via_lane, via_routes))
    finally:
        await gateway.close()
    assert [a.status_code for a, _ in answers] == [200, 200, 401, 401, 404, 400, 400, 200, 429]
    for via_lane, via_routes in answers:
        assert via_lane.status_code == via_routes.status_code, via_routes.text
        if via_lane.status_code != 200:
            assert via_lane.json() == json.loads(via_routes.text.replace("limited-routes", "limited-lane"))
        for name in SAME_HEADERS:
            assert via_lane.headers.get(name) == via_routes.headers.get(name), name
        assert len(via_lane.headers["x-request-id"]) == len(via_routes.headers["x-request-id"]) == 32
