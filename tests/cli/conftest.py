"""CLI fixtures: a registered model with an alias, a prompt dataset, and logged traffic for it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from llmops.data.synth import generate
from llmops.data.versions import DatasetStore
from llmops.registry.client import Registry
from llmops.store.home import Home, open_home
from llmops.store.schema import GatewayRequest, utcnow

LOGGED = 60


@dataclass(frozen=True)
class Served:
    home: Home
    version: str  # what the gateway logs: name@N
    dataset: str  # a prompt dataset version for drift references


def log_requests(home: Home, version: str, prompts: list[str], *, prefix: str = "req") -> list[str]:
    """Rows as the gateway writes them for ``version`` (the last minutes); returns their ids."""
    now = utcnow()
    ids = []
    with home.store.transaction() as session:
        for index, prompt in enumerate(prompts):
            request_id = f"{prefix}-{index:04d}-{'a' * 24}"
            ids.append(request_id)
            session.add(
                GatewayRequest(
                    id=request_id, ts=now - timedelta(seconds=index + 1), endpoint="completions",
                    model_version=version, deployment="demo", stream=False, prompt=prompt,
                    completion="ok", prompt_tokens=5, completion_tokens=2, latency_ms=12.0,
                    status=200, cost_usd=0.0, cache_hit=False,
                )
            )  # fmt: skip
    return ids


@pytest.fixture
def served(tiny_model_dir: Path) -> Served:
    """``demo@1`` aliased ``production``, dataset ``prompts@1``, and LOGGED requests answered by demo@1."""
    home = open_home()
    registry = Registry.from_home(home)
    info = registry.register(tiny_model_dir, "demo")
    registry.set_alias("demo", "production", info.version)
    rows = [dict(row) for row in generate("intent", 150, seed=0)]
    dataset = DatasetStore.from_home(home).commit("prompts", rows, "prompt_completion")
    log_requests(home, info.ref, [str(row["prompt"]) for row in rows[:LOGGED]])
    return Served(home, info.ref, dataset.ref)
