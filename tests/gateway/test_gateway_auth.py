"""Authentication, roles, route policies, input checks and x-request-id on every answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI

from llmops.gateway.app import build_app
from llmops.gateway.policy import PUBLIC_PATHS, RequireRole, route_policy
from llmops.gateway.service import build_gateway
from llmops.security.keys import KeyStore
from llmops.security.roles import Role
from llmops.store.home import Home

pytestmark = pytest.mark.anyio


def test_every_route_is_public_or_declares_a_role(sqlite_home: Home, gw: Any) -> None:
    app = build_app(build_gateway(gw.config(), sqlite_home, active_health_checks=False))
    policies = {getattr(r, "path", ""): route_policy(r) for r in app.routes}
    assert all(policy is not None for policy in policies.values()), policies
    assert {p for p, policy in policies.items() if policy == "public"} == set(PUBLIC_PATHS)
    assert policies["/api/keys"] is Role.ADMIN and policies["/v1/chat/completions"] is Role.CONSUMER


def test_a_route_without_policy_stops_the_build(
    sqlite_home: Home, monkeypatch: pytest.MonkeyPatch, gw: Any
) -> None:
    from llmops.gateway import app as app_module

    original = app_module._add_public_routes

    def with_unguarded(app: FastAPI) -> None:
        original(app)

        @app.get("/debug")
        async def debug() -> dict[str, str]:
            return {}

    monkeypatch.setattr(app_module, "_add_public_routes", with_unguarded)
    with pytest.raises(RuntimeError, match="/debug"):
        build_app(build_gateway(gw.config(), sqlite_home, active_health_checks=False))
    assert isinstance(RequireRole(Role.ADMIN).role, Role)


async def test_keys_roles_and_errors(home: Home, make_key: Any, gw: Any) -> None:
    config = gw.config(gw.deployment("support-bot"), gw.deployment("other"))
    consumer = make_key(models=("support-bot",))
    admin = make_key(Role.ADMIN)
    mocks = gw.in_process(**{"support-bot": gw.MockUpstream("a"), "other": gw.MockUpstream("b")})
    async with gw.client(home, config, mocks) as (client, _):
        missing = await client.post("/v1/chat/completions", json=gw.chat_body())
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_key"
        assert missing.headers["x-request-id"]
        bogus = "sk-llmops-" + "x" * 43
        invalid = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(bogus))
        assert invalid.status_code == 401 and bogus not in invalid.text
        ok = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(consumer))
        assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"].startswith("a:")
        assert len(ok.headers["x-request-id"]) == 32
        for answer in (missing, ok):  # no response can be rendered or framed by a browser
            assert answer.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
            assert answer.headers["x-content-type-options"] == "nosniff"
        forbidden = await client.get("/api/keys", headers=gw.bearer(consumer))
        assert forbidden.status_code == 403 and "admin" in forbidden.json()["error"]["message"]
        assert (await client.get("/api/keys", headers=gw.bearer(admin))).status_code == 200
        unknown = await client.post(
            "/v1/chat/completions", json=gw.chat_body("other"), headers=gw.bearer(consumer)
        )
        assert unknown.status_code == 404
        assert (
            "support-bot" in unknown.json()["error"]["message"]
            and "other" not in unknown.json()["error"]["message"].split(":")[-1]
        )
        models = await client.get("/v1/models", headers=gw.bearer(consumer))
        assert [m["id"] for m in models.json()["data"]] == ["support-bot"]
        public = await client.get("/healthz", headers={"x-request-id": "client-id-1"})
        assert public.status_code == 200 and public.headers["x-request-id"] not in ("", "client-id-1")
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/nope")).headers["x-request-id"]


async def test_url_fields_and_sizes_are_refused(home: Home, make_key: Any, gw: Any) -> None:
    key = make_key()
    mock = gw.MockUpstream("a")
    async with gw.client(
        home,
        gw.config(http={"max_body_bytes": 4096, "max_header_bytes": 2048}),
        gw.in_process(**{"support-bot": mock}),
    ) as (client, _):
        for extra in (
            {"api_base": "http://169.254.169.254/"},
            {"metadata": {"callback_url": "x"}},
            {"user": "http://evil"},
        ):
            response = await client.post(
                "/v1/chat/completions", json=gw.chat_body(**extra), headers=gw.bearer(key)
            )
            assert response.status_code == 400 and response.json()["error"]["code"] == "url_not_allowed", (
                extra
            )
        image = gw.chat_body(
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]
        )
        refused = await client.post("/v1/chat/completions", json=image, headers=gw.bearer(key))
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "messages[0].content[0].image_url"  # the field's path
        big = await client.post(
            "/v1/chat/completions",
            json=gw.chat_body(messages=[{"role": "user", "content": "x" * 5000}]),
            headers=gw.bearer(key),
        )
        assert big.status_code == 413 and big.headers["x-request-id"]
        headers = {**gw.bearer(key), "x-padding": "y" * 3000}
        assert (
            await client.post("/v1/chat/completions", json=gw.chat_body(), headers=headers)
        ).status_code == 431
        assert (
            await client.post("/v1/chat/completions", content=b"{not json", headers=gw.bearer(key))
        ).status_code == 400
        assert mock.calls == []


async def test_revocation_reaches_the_worker_within_the_ttl(home: Home, make_key: Any, gw: Any) -> None:
    key = make_key()
    config = gw.config(auth={"key_cache_ttl_s": 0.3})
    async with gw.client(home, config, gw.in_process(**{"support-bot": gw.MockUpstream("a")})) as (client, _):
        assert (
            await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
        ).status_code == 200
        keys = KeyStore.from_home(home)
        keys.revoke(keys.list()[0].id, reason="leaked")
        await asyncio.sleep(0.4)
        refused = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "key_revoked"


async def test_known_keys_keep_working_while_the_key_store_is_unreachable(
    sqlite_home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmops.errors import StoreUnavailable
    from llmops.gateway.auth import KeyCache
    from llmops.gateway.config import AuthConfig
    from llmops.security.keys import KeySpec

    keys = KeyStore.from_home(sqlite_home)
    known, never_seen = keys.create(KeySpec(name="known")).key, keys.create(KeySpec(name="new")).key
    cache = KeyCache(keys, AuthConfig(key_cache_ttl_s=0, negative_cache_ttl_s=0))
    no_stale = KeyCache(keys, AuthConfig(key_cache_ttl_s=0, stale_if_error_s=0))
    assert (await cache.authenticate(known)).key.name == "known"
    await no_stale.authenticate(known)

    def down(digest: str) -> None:
        raise StoreUnavailable("lost the connection to the database; retry")

    monkeypatch.setattr(keys, "lookup_digest", down)
    assert (await cache.authenticate(known)).key.name == "known"
    with pytest.raises(StoreUnavailable):
        await cache.authenticate(never_seen)
    with pytest.raises(StoreUnavailable):
        await no_stale.authenticate(known)
