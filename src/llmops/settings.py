"""Settings: the one place environment variables are read (pydantic-settings), once, at start-up.

Everything else receives a ``Settings`` object or calls ``get_settings()``. Imports nothing from
other llmops packages except ``errors``.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_FILE = "secret"


class Settings(BaseSettings):
    """Process-wide configuration, read from ``LLMOPS_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_", extra="ignore")

    home: Path = Field(default=Path(".llmops"), description="Folder for the embedded store and files.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the metadata store; default SQLite in the home."
    )
    artifacts: Path | None = Field(
        default=None, description="Folder of the content-addressed artifact store; default in the home."
    )
    redis_url: str | None = Field(default=None, description="Redis URL for shared limits and cache.")
    secret: SecretStr | None = Field(
        default=None, description="Server secret (HMAC of API keys); generated into the home if unset."
    )
    sqlite_busy_timeout_s: float = Field(
        default=30.0, description="How long a SQLite writer waits for a lock before failing."
    )
    trust_remote_code_allow: list[str] = Field(
        default_factory=list,
        description="Model names or digests whose Python code in the model directory may run (auto_map).",
    )
    payload_keys: SecretStr | None = Field(
        default=None,
        description="Fernet keys encrypting logged prompts and completions, comma-separated: the first "
        "encrypts, all decrypt (rotation). Unset: payloads are stored unencrypted.",
    )
    payload_read_role: str = Field(
        default="deployer",
        description="Lowest role whose API reads of the request log decrypt payloads; lower roles see "
        "[encrypted].",
    )
    retention_request_payloads_days: float | None = Field(
        default=None, description="Prompts and completions older than this are removed by `privacy purge`."
    )
    retention_request_metadata_days: float | None = Field(
        default=None, description="Request-log rows older than this are deleted by `privacy purge`."
    )
    retention_feedback_days: float | None = Field(
        default=None, description="Feedback older than this is deleted by `privacy purge`."
    )
    retention_audit_days: float | None = Field(
        default=None, description="Audit events older than this may be purged; at least 180 (unset: kept)."
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector for traces (e.g. http://collector:4318); unset: tracing off.",
    )
    otel_service_name: str = Field(
        default="llmops",
        description="service.name prefix of exported spans; the gateway adds -gateway, a replica -replica.",
    )
    trace_sample_ratio: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Share of new traces sampled (0..1; the default 0.1 keeps tracing under 10% of gateway "
        "throughput); replicas follow their caller's sampling decision.",
    )
    gateway_url: str | None = Field(
        default=None,
        description="Admin base URL of the running gateway that `llmops deploy` registers replicas with.",
    )
    gateway_key: SecretStr | None = Field(
        default=None, description="API key (deployer role) `llmops deploy` uses on the gateway's admin API."
    )
    actor: str = Field(
        default_factory=lambda: os.environ.get("USER") or "unknown",
        description="Who is acting, recorded in audit events from the CLI and the Python API.",
    )

    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_home() / 'llmops.db'}"

    def resolved_artifacts(self) -> Path:
        return (self.artifacts or self.resolved_home() / "artifacts").expanduser().resolve()

    def secret_value(self) -> bytes:
        """The server secret; generated once into ``home/secret`` (mode 0600) when not configured."""
        if self.secret is not None:
            return self.secret.get_secret_value().encode()
        path = self.resolved_home() / SECRET_FILE
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the home is owner-only
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return path.read_text().strip().encode()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read from the environment on first call."""
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests and the CLI's ``--home`` use this)."""
    get_settings.cache_clear()
