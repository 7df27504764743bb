"""`llmops serve` honours LLMOPS_REDIS_URL (README, Configuration): limits live in Redis without a flag."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.conftest import CliRunner

from llmops.gateway.limits import MemoryRateLimiter, RedisRateLimiter
from llmops.settings import reset_settings

REDIS = "redis://127.0.0.1:6379/0"


def _serve(cli: CliRunner, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    import uvicorn

    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: served.append(app))
    result = cli("serve", "--port", "4999", *args)
    assert result.code == 0, result.err
    assert len(served) == 1
    return served[0].state.gateway


def test_serve_uses_redis_from_the_environment(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_REDIS_URL", REDIS)
    reset_settings()
    gateway = _serve(cli, monkeypatch)
    assert gateway.config.redis_url == REDIS
    assert gateway.config.limits.backend == "redis"
    assert isinstance(gateway.pipeline.limiter, RedisRateLimiter)


def test_flag_and_config_file_win_over_the_environment(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LLMOPS_REDIS_URL", "redis://127.0.0.1:6379/9")
    reset_settings()
    assert _serve(cli, monkeypatch, "--redis-url", REDIS).config.redis_url == REDIS
    config = tmp_path / "gateway.yaml"
    config.write_text(f"redis_url: {REDIS}\n")
    assert _serve(cli, monkeypatch, "--config", str(config)).config.redis_url == REDIS


def test_without_redis_limits_stay_in_memory(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMOPS_REDIS_URL", raising=False)
    reset_settings()
    gateway = _serve(cli, monkeypatch)
    assert gateway.config.redis_url is None
    assert isinstance(gateway.pipeline.limiter, MemoryRateLimiter)
