"""The admin API resolves ``version`` like the registry and the CLI: alias, number or latest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.cli.conftest import log_requests

from llmops.registry.client import Registry
from llmops.security.roles import Role
from llmops.store.home import Home

pytestmark = pytest.mark.anyio


async def test_request_search_and_export_by_alias_and_unknown_refused(
    home: Home, make_key: Callable[..., str], gw: Any, tiny_model_dir: Path
) -> None:
    registry = Registry.from_home(home)
    registry.set_alias("demo", "production", registry.register(tiny_model_dir, "demo").version)
    ids = log_requests(home, "demo@1", [f"where is my order {n}?" for n in range(5)])
    log_requests(home, "remote-model", ["hello"], prefix="remote")
    developer = make_key(Role.DEVELOPER)
    async with gw.client(home, gw.config()) as (client, _):
        found = await client.get(
            "/api/requests", params={"version": "demo@production"}, headers=gw.bearer(developer)
        )
        assert found.status_code == 200 and sorted(row["id"] for row in found.json()) == ids
        exported = await client.get(
            "/api/requests/export", params={"version": "demo"}, headers=gw.bearer(developer)
        )
        assert exported.status_code == 200 and len(exported.text.splitlines()) == len(ids)
        as_written = await client.get(
            "/api/requests", params={"version": "remote-model"}, headers=gw.bearer(developer)
        )
        assert [row["model_version"] for row in as_written.json()] == ["remote-model"]
        unknown = await client.get(
            "/api/requests", params={"version": "demo@prodution"}, headers=gw.bearer(developer)
        )
        assert unknown.status_code == 404
        assert unknown.json()["error"]["param"] == "version"
        assert "Did you mean: production?" in unknown.json()["error"]["message"]
