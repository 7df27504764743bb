"""The admin API (/api/): roles, keys shown once, traffic splits and replicas, audited; config files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from llmops.cli.serve_gateway import build_config
from llmops.errors import InvalidInput
from llmops.gateway.config import GatewayConfig
from llmops.gateway.upstream_urls import check_upstream_url
from llmops.security.roles import Role
from llmops.store import audit
from llmops.store.home import Home

pytestmark = pytest.mark.anyio


async def test_admin_api(home: Home, make_key: Any, gw: Any) -> None:
    admin, deployer, developer = make_key(Role.ADMIN), make_key(Role.DEPLOYER), make_key(Role.DEVELOPER)
    spec = gw.deployment("support-bot", arms=[{"name": "stable"}, {"name": "canary", "weight": 0}])
    mocks = gw.in_process(
        **{"support-bot/stable": gw.MockUpstream("s"), "support-bot/canary": gw.MockUpstream("c")}
    )
    async with gw.client(home, gw.config(spec), mocks) as (client, _):
        created = await client.post("/api/keys", json={"name": "team", "rpm": 10}, headers=gw.bearer(admin))
        assert created.status_code == 201 and created.json()["key"].startswith("sk-llmops-")
        new_key = created.json()["key"]
        listed = await client.get("/api/keys", headers=gw.bearer(admin))
        assert "team" in listed.text and new_key not in listed.text
        answer = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(new_key))
        assert answer.json()["choices"][0]["message"]["content"].startswith("s:")
        split = {"weights": {"stable": 0, "canary": 1}, "reason": "promote"}
        assert (
            await client.put("/api/deployments/support-bot/split", json=split, headers=gw.bearer(developer))
        ).status_code == 403
        moved = await client.put(
            "/api/deployments/support-bot/split", json=split, headers=gw.bearer(deployer)
        )
        assert moved.status_code == 200 and [a["weight"] for a in moved.json()["arms"]] == [0, 1]
        answer = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(new_key))
        assert answer.json()["choices"][0]["message"]["content"].startswith("c:")
        bad = await client.put(
            "/api/deployments/support-bot/split", json={"weights": {"x": 1}}, headers=gw.bearer(deployer)
        )
        assert bad.status_code == 409 and "stable, canary" in bad.json()["error"]["message"]
        metadata = await client.post(
            "/api/deployments/support-bot/arms/stable/replicas",
            json={"url": "http://169.254.169.254"},
            headers=gw.bearer(deployer),
        )
        assert metadata.status_code == 403 and metadata.json()["error"]["code"] == "url_not_allowed"
        added = await client.post(
            "/api/deployments/support-bot/arms/stable/replicas",
            json={"url": "http://127.0.0.1:9", "name": "spare"},
            headers=gw.bearer(deployer),
        )
        assert added.status_code == 201 and "spare" in added.text
        removed = await client.delete(
            "/api/deployments/support-bot/arms/stable/replicas",
            params={"replica": "spare"},
            headers=gw.bearer(deployer),
        )
        assert removed.status_code == 200 and "spare" not in removed.text
        key_id = created.json()["id"]
        assert (await client.post(f"/api/keys/{key_id}/revoke", headers=gw.bearer(admin))).status_code == 200
        refused = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(new_key))
        assert refused.status_code == 401
        import asyncio
        import time

        deadline = time.monotonic() + 10
        rows = await client.get("/api/requests", headers=gw.bearer(developer))
        while len(rows.json()) < 2 and time.monotonic() < deadline:  # rows are written in the background
            await asyncio.sleep(0.05)
            rows = await client.get("/api/requests", headers=gw.bearer(developer))
        assert rows.status_code == 200 and len(rows.json()) == 2 and new_key not in rows.text
        schema = (await client.get("/openapi.json")).json()
        assert {"/api/keys", "/api/deployments/{name}/split", "/v1/chat/completions"} <= set(schema["paths"])
        paths = schema["paths"]
        revoke = paths["/api/keys"]["post"]["responses"]["201"]["links"]["RevokeKey"]
        assert revoke["operationId"] == paths["/api/keys/{key_id}/revoke"]["post"]["operationId"]
        assert revoke["parameters"] == {"key_id": "$response.body#/id"}  # the created key's id
        logged = paths["/v1/chat/completions"]["post"]["responses"]["200"]["links"]["GetLoggedRequest"]
        assert logged["operationId"] == paths["/api/requests/{request_id}"]["get"]["operationId"]
        assert logged["parameters"] == {"request_id": "$response.header.x-request-id"}
        assert (await client.get("/metrics", headers=gw.bearer(developer))).status_code == 200
    with home.store.read() as session:
        actions = [e.action for e in audit.iter_events(session)]
    assert (
        actions.count("gateway.split.set") == 1
        and "gateway.replica.add" in actions
        and "key.revoke" in actions
    )


@pytest.mark.parametrize("name", ["", "   ", "\u001c", "\t\u001f\n", "\u0000", "\ufeff", "\u3000\u00a0"])
async def test_a_key_name_without_a_visible_character_is_refused(
    home: Home, make_key: Any, gw: Any, name: str
) -> None:
    """The schema and the key store agree on what a name is (U+001C..U+001F count as blank)."""
    admin = make_key(Role.ADMIN)
    async with gw.client(home, gw.config(gw.deployment("m")), gw.in_process(m=gw.MockUpstream("m"))) as (
        client,
        _,
    ):
        refused = await client.post("/api/keys", json={"name": name}, headers=gw.bearer(admin))
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "name", refused.text
        listed = await client.get("/api/keys", headers=gw.bearer(admin))
        assert len(listed.json()) == 1  # only the admin's own key
        schema = (await client.get("/openapi.json")).json()["components"]["schemas"]["KeyCreate"]
        assert re.search(schema["properties"]["name"]["pattern"], name) is None  # the schema says so too


def test_upstream_url_policy() -> None:
    public = check_upstream_url(
        "https://replica.example:8000/", resolver=lambda host, port: ["93.184.216.34"]
    )
    assert public == "https://replica.example:8000"
    for url, allowed in (
        ("http://127.0.0.1:8000", {"allow_loopback": True}),
        ("http://10.0.0.5", {"allow_private": True}),
    ):
        with pytest.raises(InvalidInput):
            check_upstream_url(url)
        assert check_upstream_url(url, **allowed) == url
    with pytest.raises(InvalidInput):  # a name resolving to a private address needs allow_private
        check_upstream_url("http://replica.internal", resolver=lambda host, port: ["10.1.2.3"])
    for url in (
        "http://169.254.169.254/latest",
        "file:///etc/passwd",
        "http://user:pw@host",
        "http://[fe80::1]/",
    ):
        with pytest.raises(InvalidInput):
            check_upstream_url(url, allow_loopback=True, allow_private=True)


def test_config_yaml_flags_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "allow_loopback_upstreams: true\n"
        "deployments:\n"
        "  - name: support-bot\n"
        "    model: support-bot@production\n"
        "    upstreams: [{url: 'http://127.0.0.1:8001'}]\n"
        "    price: {usd_per_engine_second: 0.001}\n"
    )
    config = build_config(
        path, ["extra=http://127.0.0.1:8002"], {"port": 4100, "redis_url": None}, {"free": True}
    )
    assert [d.name for d in config.deployments] == ["support-bot", "extra"] and config.port == 4100
    assert config.deployments[0].arms[0].model == "support-bot@production"
    with pytest.raises(InvalidInput, match="needs a price"):
        build_config(path, ["x=http://127.0.0.1:1"], {}, {"free": False, "usd_per_engine_second": 0.0})
    path.write_text("deployments: []\nsurprise: 1\n")
    with pytest.raises(InvalidInput, match="surprise"):
        GatewayConfig.from_yaml(path)
    with pytest.raises(ValueError, match="unknown fallbacks"):
        GatewayConfig.model_validate(
            {"deployments": [{"name": "a", "price": {"free": True}, "fallbacks": ["b"]}]}
        )


async def test_admin_changes_reach_other_workers(home: Home, make_key: Any, gw: Any) -> None:
    deployer, consumer = make_key(Role.DEPLOYER), make_key()
    spec = gw.deployment("support-bot", arms=[{"name": "stable"}, {"name": "canary", "weight": 0}])
    config = gw.config(spec, admin_sync_s=0.1)

    def mocks() -> dict[str, list[Any]]:
        return gw.in_process(
            **{"support-bot/stable": gw.MockUpstream("s"), "support-bot/canary": gw.MockUpstream("c")}
        )

    async with gw.client(home, config, mocks()) as (one, _), gw.client(home, config, mocks()) as (two, other):
        split = {"weights": {"stable": 0, "canary": 1}}
        assert (
            await one.put("/api/deployments/support-bot/split", json=split, headers=gw.bearer(deployer))
        ).status_code == 200
        import asyncio
        import time

        deadline = time.monotonic() + 10
        while other.table.get("support-bot").arms[1].weight != 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert [a.weight for a in other.table.get("support-bot").arms] == [0, 1]
        answer = await two.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(consumer))
        assert answer.json()["choices"][0]["message"]["content"].startswith("c:")
    async with gw.client(home, config, mocks()) as (_, restarted):
        assert [a.weight for a in restarted.table.get("support-bot").arms] == [0, 1]


def test_serve_command_reports_config_errors(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from llmops.cli import serve_gateway

    app = typer.Typer()
    app.command("serve")(serve_gateway.serve)
    app.command("noop")(lambda: None)
    bad = tmp_path / "gateway.yaml"
    bad.write_text("deployments: [{name: x, upstreams: [{url: 'http://127.0.0.1:1'}]}]\n")
    result = CliRunner().invoke(app, ["serve", "--config", str(bad)])
    assert result.exit_code != 0 and "price" in str(result.exception)
    assert CliRunner().invoke(app, ["serve", "--help"]).exit_code == 0
