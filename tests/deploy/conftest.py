"""What the deploy tests with real processes share: a home with a tiny registered model, and a
real gateway on loopback that follows the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.factories import make_tiny_model
from tests.servers import serving

from llmops.gateway.app import build_app
from llmops.gateway.config import GatewayConfig
from llmops.gateway.service import build_gateway
from llmops.registry.client import Registry
from llmops.security.keys import KeySpec, KeyStore
from llmops.security.roles import Role
from llmops.store.home import Home, open_home
from llmops.train.tokenizer import train_tokenizer


@pytest.fixture
def deploy_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    home = open_home()
    folder = tmp_path / "tiny"
    tokenizer = train_tokenizer([f"where is my order number {i}" for i in range(200)], folder, vocab_size=300)
    make_tiny_model(folder, vocab_size=len(tokenizer))
    registry = Registry.from_home(home)
    registry.register(folder, "support-bot")
    registry.set_alias("support-bot", "production", 1)
    return home


@pytest.fixture
def gateway(deploy_home: Home) -> Iterator[tuple[str, str, str]]:
    """A real gateway on loopback following the store; yields its URL, a deployer and a consumer key."""
    keys = KeyStore.from_home(deploy_home)
    deployer = keys.create(KeySpec(name="deployer", role=Role.DEPLOYER)).key
    consumer = keys.create(KeySpec(name="client", role=Role.CONSUMER)).key
    config = GatewayConfig.model_validate(
        {"allow_loopback_upstreams": True, "admin_sync_s": 0.5, "health": {"interval_s": 0.5}}
    )
    with serving(build_app(build_gateway(config, deploy_home))) as url:
        yield url, deployer, consumer
