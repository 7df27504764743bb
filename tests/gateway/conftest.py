"""Gateway fixtures: a mock upstream, gateways wired to it, keys, and real servers on loopback."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.monitor.conftest import Receiver, webhook_receiver  # noqa: F401 (the loopback webhook fixture)
from tests.servers import serving

from llmops.gateway.app import build_app
from llmops.gateway.config import GatewayConfig
from llmops.gateway.service import Gateway, build_gateway
from llmops.security.keys import KeySpec, KeyStore
from llmops.security.roles import Role
from llmops.store.home import Home

_spec = importlib.util.spec_from_file_location(
    "gateway_mock_upstream", Path(__file__).parent / "mock_upstream.py"
)
assert _spec and _spec.loader
mock_upstream = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = mock_upstream
_spec.loader.exec_module(mock_upstream)
MockUpstream = mock_upstream.MockUpstream
MOCK_SCRIPT = Path(__file__).parent / "mock_upstream.py"


def deployment(name: str = "support-bot", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "price": {"input_usd_per_1k_tokens": 1.0, "output_usd_per_1k_tokens": 2.0},
    }
    body.update(extra)
    return body


def gateway_config(*deployments: dict[str, Any], **extra: Any) -> GatewayConfig:
    body: dict[str, Any] = {
        "allow_loopback_upstreams": True,
        "deployments": list(deployments) or [deployment()],
        "request_log": {"flush_interval_s": 0.05},
    }
    body.update(extra)
    return GatewayConfig.model_validate(body)


@pytest.fixture
def make_key(home: Home) -> Callable[..., str]:
    keys = KeyStore.from_home(home)

    def make(role: Role = Role.CONSUMER, **spec: Any) -> str:
        return keys.create(KeySpec(name=spec.pop("name", f"k-{uuid.uuid4().hex[:6]}"), role=role, **spec)).key

    return make


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on an ephemeral loopback port in a thread; yields its URL."""
    with serving(app) as url:
        yield url


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A unique key prefix on the real Redis; its keys are deleted afterwards."""
    import redis

    prefix = f"test:gw:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    keys = list(client.scan_iter(prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def gateway_client(
    home: Home, config: GatewayConfig, in_process: dict[str, list[Any]] | None = None, **kwargs: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    """An in-process gateway (no socket) with its parts started; yields a client and the gateway."""
    gateway = build_gateway(config, home, in_process=in_process, active_health_checks=False, **kwargs)
    app = build_app(gateway)
    await gateway.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client, gateway
    finally:
        await gateway.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat_body(model: str = "support-bot", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": 5,
        **extra,
    }


def in_process(**mocks: Any) -> dict[str, list[Any]]:
    """Mock replicas as in-process upstreams, keyed by deployment (or ``deployment/arm``)."""
    from llmops.gateway.upstreams import AsgiUpstream

    return {
        name.replace("__", "/"): [AsgiUpstream(mock, name=f"{name}-replica")] for name, mock in mocks.items()
    }


class GatewayKit:
    """The helpers of this folder, handed to tests as the ``gw`` fixture (conftest is not importable)."""

    MockUpstream = MockUpstream
    deployment = staticmethod(deployment)
    config = staticmethod(gateway_config)
    client = staticmethod(gateway_client)
    bearer = staticmethod(bearer)
    chat_body = staticmethod(chat_body)
    serve = staticmethod(serve)
    in_process = staticmethod(in_process)
    mock_script = MOCK_SCRIPT
    Receiver = Receiver


@pytest.fixture
def gw() -> type[GatewayKit]:
    return GatewayKit
