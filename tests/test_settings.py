from __future__ import annotations

import stat
from pathlib import Path

import pytest

from llmops.errors import InvalidInput, Overloaded, RateLimited
from llmops.settings import Settings, get_settings, reset_settings


def test_defaults_derive_from_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "h")
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / 'h' / 'llmops.db'}"
    assert settings.resolved_artifacts() == tmp_path / "h" / "artifacts"


def test_environment_is_read_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "a"))
    reset_settings()
    first = get_settings()
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "b"))
    assert get_settings() is first and first.resolved_home() == tmp_path / "a"
    monkeypatch.setenv("LLMOPS_DATABASE_URL", "postgresql://db/x")
    reset_settings()
    assert get_settings().resolved_database_url() == "postgresql://db/x"


def test_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "h")
    secret = settings.secret_value()
    assert len(secret) >= 32
    mode = stat.S_IMODE((tmp_path / "h" / "secret").stat().st_mode)
    assert mode == 0o600
    assert Settings(home=tmp_path / "h").secret_value() == secret


def test_configured_secret_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_SECRET", "from-env")
    assert Settings(home=tmp_path).secret_value() == b"from-env"
    assert not (tmp_path / "secret").exists()


def test_error_bodies_have_openai_shape() -> None:
    body = InvalidInput("max_tokens must be >= 1", param="max_tokens").to_body()
    assert body == {
        "error": {
            "message": "max_tokens must be >= 1",
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": None,
        }
    }
    assert RateLimited("slow down", retry_after=2.4).headers() == {"Retry-After": "2"}
    assert Overloaded("full", retry_after=0.1).status_code == 503
    assert Overloaded("full", retry_after=0.1).headers() == {"Retry-After": "1"}
