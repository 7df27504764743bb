"""The gateway follows the store: alias moves, arms and store-defined deployments reach every worker
within ``admin_sync_s`` without a restart; in-flight requests keep the version that started them."""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from llmops.registry.client import Registry
from llmops.security.roles import Role
from llmops.store.home import Home
from llmops.store.schema import GatewayRequest, utcnow

pytestmark = pytest.mark.anyio
SYNC_S = 0.3


def _two_versions(home: Home, tiny_model_dir: Path, tmp_path: Path) -> Registry:
    registry = Registry.from_home(home)
    registry.register(tiny_model_dir, "support-bot")
    other = shutil.copytree(tiny_model_dir, tmp_path / "v2")
    (other / "generation_config.json").write_text("{}")
    registry.register(other, "support-bot")
    registry.set_alias("support-bot", "production", 1)
    return registry


async def _version_seen(client: httpx.AsyncClient, key: str, deployment: str = "support-bot") -> str:
    listed = await client.get("/api/deployments", headers={"Authorization": f"Bearer {key}"})
    (entry,) = [d for d in listed.json() if d["name"] == deployment]
    return str(entry["arms"][0]["model"])


async def _logged(home: Home, expected_rows: int) -> list[tuple[datetime, str | None]]:
    """(start time, version) of every logged request, oldest first."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with home.store.read() as session:
            query = select(GatewayRequest.ts, GatewayRequest.model_version).order_by(GatewayRequest.ts)
            rows = session.execute(query).all()
        if len(rows) >= expected_rows:
            return [(ts.replace(tzinfo=None), version) for ts, version in rows]
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {len(rows)} of {expected_rows} request-log rows were written")


async def test_alias_move_reaches_every_gateway_within_the_interval_without_failed_requests(
    home: Home, tiny_model_dir: Path, tmp_path: Path, make_key: Any, gw: Any
) -> None:
    registry = _two_versions(home, tiny_model_dir, tmp_path)
    key, developer = make_key(), make_key(Role.DEVELOPER)
    config = gw.config(gw.deployment(model="support-bot@production"), admin_sync_s=SYNC_S)
    failures: list[str] = []
    sent = 0
    async with (
        gw.client(home, config, gw.in_process(**{"support-bot": gw.MockUpstream("a")})) as (one, _),
        gw.client(home, config, gw.in_process(**{"support-bot": gw.MockUpstream("b")})) as (two, _),
    ):
        stop = asyncio.Event()

        async def steady_load() -> None:
            nonlocal sent
            while not stop.is_set():
                for client in (one, two):
                    answer = await client.post(
                        "/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key)
                    )
                    sent += 1
                    if answer.status_code != 200:
                        failures.append(answer.text)
                await asyncio.sleep(0.02)

        load = asyncio.create_task(steady_load())
        await asyncio.sleep(0.3)
        assert {await _version_seen(c, developer) for c in (one, two)} == {"support-bot@1"}
        before_move = utcnow().replace(tzinfo=None)
        registry.set_alias("support-bot", "production", 2, reason="by hand")
        moved_at = time.monotonic()
        reached: dict[int, float] = {}
        while len(reached) < 2 and time.monotonic() - moved_at < 5:
            for index, client in enumerate((one, two)):
                if index not in reached and await _version_seen(client, developer) == "support-bot@2":
                    reached[index] = time.monotonic() - moved_at
            await asyncio.sleep(0.02)
        all_moved = utcnow().replace(tzinfo=None)
        await asyncio.sleep(0.3)
        stop.set()
        await load
    assert len(reached) == 2, f"the alias move reached only workers {sorted(reached)}"
    assert max(reached.values()) <= SYNC_S + 0.5, f"took {reached} with a {SYNC_S}s interval"
    assert failures == [] and sent > 20
    logged = await _logged(home, sent)
    assert {v for ts, v in logged if ts < before_move} == {"support-bot@1"}
    assert {v for ts, v in logged if ts > all_moved} == {"support-bot@2"}, (
        "every worker serves the new version"
    )


async def test_in_flight_request_keeps_the_version_that_started_it(
    home: Home, tiny_model_dir: Path, tmp_path: Path, make_key: Any, gw: Any
) -> None:
    registry = _two_versions(home, tiny_model_dir, tmp_path)
    key = make_key()
    slow = gw.MockUpstream("s", token_delay=0.1)
    config = gw.config(gw.deployment(model="support-bot@production"), admin_sync_s=SYNC_S)
    async with gw.client(home, config, gw.in_process(**{"support-bot": slow})) as (client, gateway):
        slow_call = client.post(
            "/v1/chat/completions", json=gw.chat_body(max_tokens=8), headers=gw.bearer(key)
        )
        in_flight = asyncio.create_task(slow_call)
        while not slow.calls:  # the replica has the request: it started on version 1
            await asyncio.sleep(0.01)
        registry.set_alias("support-bot", "production", 2)
        await asyncio.to_thread(gateway.overrides.sync_once)
        assert gateway.table.get("support-bot").arms[0].model_version == "support-bot@2"
        assert not in_flight.done()
        assert (await in_flight).status_code == 200
        after = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
        assert after.status_code == 200
    assert [v for _, v in await _logged(home, 2)] == ["support-bot@1", "support-bot@2"]


async def test_store_defined_deployment_and_canary_arm_reach_another_worker(
    home: Home, make_key: Any, gw: Any
) -> None:
    key, deployer, developer = make_key(), make_key(Role.DEPLOYER), make_key(Role.DEVELOPER)
    config = gw.config(gw.deployment("other"), admin_sync_s=SYNC_S)
    put = {
        "deployment": {
            "name": "new-bot",
            "price": {"free": True},
            "arms": [{"name": "stable", "model": "new-bot@1"}],
        },
        "reason": "supervisor start",
    }
    with gw.serve(gw.MockUpstream("stable")) as stable_url, gw.serve(gw.MockUpstream("canary")) as canary_url:
        async with (
            gw.client(home, config) as (one, gateway_one),
            gw.client(home, config) as (two, gateway_two),
        ):
            created = await one.put("/api/deployments/new-bot", json=put, headers=gw.bearer(deployer))
            assert created.status_code == 201, created.text
            assert (
                await one.put("/api/deployments/new-bot", json=put, headers=gw.bearer(deployer))
            ).status_code == 200
            replica = {"url": stable_url, "name": "new-bot-0", "model_version": "new-bot@1"}
            added = await one.post(
                "/api/deployments/new-bot/arms/stable/replicas", json=replica, headers=gw.bearer(deployer)
            )
            assert added.status_code == 201
            again = await one.post(
                "/api/deployments/new-bot/arms/stable/replicas", json=replica, headers=gw.bearer(deployer)
            )
            assert len(again.json()["arms"][0]["replicas"]) == 1, "re-registering never makes twins"
            canary = await one.put(
                "/api/deployments/new-bot/arms/canary",
                json={"model": "new-bot@2"},
                headers=gw.bearer(deployer),
            )
            assert canary.status_code == 201 and canary.json()["arms"][1]["weight"] == 0
            zeroed = await one.put(
                "/api/deployments/new-bot/arms/stable",
                json={"model": "new-bot@1", "weight": 0},
                headers=gw.bearer(deployer),
            )
            assert zeroed.status_code == 409 and zeroed.json()["error"]["param"] == "weight"
            held = [(a.name, a.weight) for a in gateway_one.table.get("new-bot").arms]
            assert held == [("stable", 100.0), ("canary", 0.0)], "a refused change leaves no trace"
            await one.post(
                "/api/deployments/new-bot/arms/canary/replicas",
                json={"url": canary_url, "name": "new-bot-canary-0"},
                headers=gw.bearer(deployer),
            )
            await asyncio.sleep(SYNC_S * 2 + 0.2)
            seen = gateway_two.table.get("new-bot")
            assert [(a.name, a.weight, len(a.replicas)) for a in seen.arms] == [
                ("stable", 100.0, 1),
                ("canary", 0.0, 1),
            ]
            answer = await two.post(
                "/v1/chat/completions", json=gw.chat_body("new-bot"), headers=gw.bearer(key)
            )
            assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"].startswith(
                "stable:"
            )

            last = await one.delete("/api/deployments/new-bot/arms/stable", headers=gw.bearer(deployer))
            assert last.status_code == 409 and "split" in last.json()["error"]["message"]
            gone = await one.delete("/api/deployments/new-bot/arms/canary", headers=gw.bearer(deployer))
            assert gone.status_code == 200 and [a["name"] for a in gone.json()["arms"]] == ["stable"]
            in_file = await one.delete("/api/deployments/other", headers=gw.bearer(deployer))
            assert in_file.status_code == 409
            assert (
                await one.delete("/api/deployments/new-bot", headers=gw.bearer(developer))
            ).status_code == 403
            assert (
                await one.delete("/api/deployments/new-bot", headers=gw.bearer(deployer))
            ).status_code == 200
            await asyncio.sleep(SYNC_S * 2 + 0.2)
            assert "new-bot" not in gateway_two.table.names()
            schema = (await one.get("/openapi.json")).json()
    for path, method in [
        ("/api/deployments/{name}", "put"),
        ("/api/deployments/{name}/arms/{arm}", "delete"),
    ]:
        assert {"400", "401", "403", "404", "409"} <= set(schema["paths"][path][method]["responses"])
