"""Admin-side defects of the gateway's security review (issue 19), reproduced through the HTTP app.

Keys made through the admin API name their maker; /readyz names no deployment to anonymous
callers; a split change survives a restart without breaking in-process arms; feedback accepts the
response's own id as well as its x-request-id.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmops.gateway.upstreams import AsgiUpstream
from llmops.security.keys import KeyStore
from llmops.security.roles import Role
from llmops.store import audit
from llmops.store.home import Home

pytestmark = pytest.mark.anyio


async def test_keys_made_and_revoked_through_the_api_record_the_admin_key(
    gw: Any, home: Home, make_key: Any
) -> None:
    admin = make_key(Role.ADMIN)
    admin_id = next(r.id for r in KeyStore.from_home(home).list() if r.role == Role.ADMIN)
    async with gw.client(home, gw.config()) as (client, _):
        made = await client.post("/api/keys", json={"name": "app"}, headers=gw.bearer(admin))
        assert made.status_code == 201
        made_id = made.json()["id"]
        revoked = await client.post(f"/api/keys/{made_id}/revoke", headers=gw.bearer(admin))
        assert revoked.status_code == 200
    assert KeyStore.from_home(home).get(made_id).created_by == f"key:{admin_id}"
    with home.store.read() as session:
        events = [e for e in audit.iter_events(session) if e.target == f"key:{made_id}"]
    assert [(e.action, e.actor) for e in events] == [
        ("key.create", f"key:{admin_id}"),
        ("key.revoke", f"key:{admin_id}"),
    ]


async def test_readyz_gives_anonymous_callers_a_status_and_admins_the_names(
    gw: Any, home: Home, make_key: Any
) -> None:
    developer = make_key(Role.DEVELOPER)
    config = gw.config(gw.deployment("secret-project-x"))
    async with gw.client(home, config) as (client, _):  # no replica at all: not ready
        anonymous = await client.get("/readyz")
        assert anonymous.status_code == 503 and anonymous.json() == {"ready": False}
        assert "secret-project-x" not in anonymous.text
        assert (await client.get("/api/readiness")).status_code == 401
        named = await client.get("/api/readiness", headers=gw.bearer(developer))
    assert named.json() == {"ready": False, "deployments_without_replicas": ["secret-project-x"]}


async def test_a_split_change_survives_a_restart_with_its_in_process_arms(
    gw: Any, home: Home, make_key: Any
) -> None:
    deployer, consumer = make_key(Role.DEPLOYER), make_key(Role.CONSUMER)
    arms = [{"name": "stable", "weight": 100}, {"name": "canary", "weight": 0}]
    config = gw.config(gw.deployment("support-bot", arms=arms))

    def replicas(version: str) -> dict[str, list[Any]]:  # in-process replicas are named by the process
        return {
            f"support-bot/{arm}": [AsgiUpstream(gw.MockUpstream(arm), name=f"in-process:{arm}@{version}")]
            for arm in ("stable", "canary")
        }

    async with gw.client(home, config, replicas("1")) as (client, _):
        split = {"weights": {"stable": 0, "canary": 100}}
        path = "/api/deployments/support-bot/split"
        changed = await client.put(path, json=split, headers=gw.bearer(deployer))
        assert changed.status_code == 200
    async with gw.client(home, config, replicas("2")) as (client, gateway):  # a restart, a new version
        answer = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(consumer))
        assert [a.weight for a in gateway.table.get("support-bot").arms] == [0, 100]
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"].startswith("canary")


def _response_id_of_stream(body: str) -> str:
    first = next(line for line in body.splitlines() if line.startswith("data: {"))
    return str(json.loads(first[6:])["id"])


async def test_feedback_accepts_the_response_id_and_the_request_id(
    gw: Any, home: Home, make_key: Any
) -> None:
    key = make_key(Role.CONSUMER)
    mocks = gw.in_process(**{"support-bot": gw.MockUpstream("m")})
    async with gw.client(home, gw.config(), mocks) as (client, _):
        whole = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
        body = gw.chat_body(stream=True)
        streamed = await client.post("/v1/chat/completions", json=body, headers=gw.bearer(key))
        text = await client.post(
            "/v1/completions", json={"model": "support-bot", "prompt": "hi"}, headers=gw.bearer(key)
        )
        answers = [
            (whole.json()["id"], whole),
            (whole.headers["x-request-id"], whole),
            (_response_id_of_stream(streamed.text), streamed),
            (text.json()["id"], text),
        ]
        for given, answer in answers:
            rated = await client.post(
                "/v1/feedback", json={"request_id": given, "thumbs": "up"}, headers=gw.bearer(key)
            )
            assert rated.status_code == 201, (given, rated.text)
            assert rated.json()["request_id"] == answer.headers["x-request-id"]
        unknown = await client.post(
            "/v1/feedback", json={"request_id": "chatcmpl-unknown", "thumbs": "up"}, headers=gw.bearer(key)
        )
    assert whole.json()["id"].startswith("chatcmpl-") and text.json()["id"].startswith("cmpl-")
    assert unknown.status_code == 404 and "x-request-id" in unknown.json()["error"]["message"]
