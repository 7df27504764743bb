"""``VLLMBackend``: vLLM's OpenAI server as a supervised child process, reached through ``OpenAIBackend``.

vLLM pins its own torch and transformers, so it runs from its own Python environment (``python``),
never imported here: ``python -m vllm.entrypoints.openai.api_server --model DIR --host 127.0.0.1
--port P``. The process is started, awaited until ``/health`` answers, and restarted with backoff
when it dies; while it is down, requests are refused with ``Overloaded`` and a ``retry_after``.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from llmops.engine.openai_backend import OpenAIBackend
from llmops.engine.replica_process import ReplicaProcess, RestartPolicy
from llmops.engine.types import (
    Backend,
    EngineStats,
    GenerationRequest,
    HealthStatus,
    ModelInfo,
    TokenEvent,
)
from llmops.errors import Overloaded, UpstreamError

VLLM_SERVER_MODULE = "vllm.entrypoints.openai.api_server"


class VLLMConfig(BaseModel):
    """How to run one vLLM replica."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    python: Path = Field(description="Python interpreter of the environment where vLLM is installed.")
    model_dir: Path = Field(description="Local model directory served by vLLM (--model).")
    served_model_name: str | None = Field(
        default=None, description="Model id clients send; default: the model directory's name."
    )
    host: str = Field(default="127.0.0.1", description="Address vLLM binds; loopback keeps it private.")
    port: int = Field(default=0, ge=0, le=65535, description="Port vLLM listens on; 0 picks a free port.")
    max_model_len: int | None = Field(default=None, ge=1, description="vLLM --max-model-len, if set.")
    cpu_kv_cache_space_gb: int | None = Field(
        default=None, ge=1, description="VLLM_CPU_KVCACHE_SPACE for vLLM's CPU build (GiB of KV cache)."
    )
    extra_args: tuple[str, ...] = Field(default=(), description="More vLLM command-line arguments.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables for vLLM.")
    module: str = Field(default=VLLM_SERVER_MODULE, description="Module run with python -m.")
    log_path: Path | None = Field(default=None, description="File for vLLM's output; default a temp file.")
    request_timeout_s: float = Field(default=600.0, gt=0, description="Timeout of one streamed request.")
    startup_timeout_s: float = Field(default=600.0, gt=0, description="How long a start may take.")
    max_restarts: int = Field(default=5, ge=0, description="Consecutive restarts before giving up.")
    backoff_initial_s: float = Field(default=1.0, gt=0, description="First restart delay; doubles.")
    backoff_max_s: float = Field(default=60.0, gt=0, description="Longest restart delay.")


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class VLLMBackend(Backend):
    """A supervised vLLM replica behind the ``Backend`` contract."""

    def __init__(self, config: VLLMConfig) -> None:
        self.config = config
        self.model_id = config.served_model_name or config.model_dir.name
        self.port = config.port or _free_port(config.host)
        self.base_url = f"http://{config.host}:{self.port}"
        self.client = OpenAIBackend(
            self.base_url,
            self.model_id,
            timeout=config.request_timeout_s,
            max_model_len=config.max_model_len or 0,
        )
        log_path = config.log_path or Path(tempfile.gettempdir()) / f"llmops-vllm-{self.port}.log"
        self.process = ReplicaProcess(
            self.command(),
            self.environment(),
            self._healthy,
            log_path,
            RestartPolicy(
                startup_timeout_s=config.startup_timeout_s,
                max_restarts=config.max_restarts,
                backoff_initial_s=config.backoff_initial_s,
                backoff_max_s=config.backoff_max_s,
            ),
        )

    def command(self) -> list[str]:
        cfg = self.config
        command = [str(cfg.python), "-m", cfg.module, "--model", str(cfg.model_dir)]
        command += ["--host", cfg.host, "--port", str(self.port), "--served-model-name", self.model_id]
        if cfg.max_model_len is not None:
            command += ["--max-model-len", str(cfg.max_model_len)]
        return command + list(cfg.extra_args)

    def environment(self) -> dict[str, str]:
        # The child inherits this process's environment (PATH, HOME, ...) plus the configured extras.
        env = {**os.environ, **self.config.env}
        if self.config.cpu_kv_cache_space_gb is not None:
            env["VLLM_CPU_KVCACHE_SPACE"] = str(self.config.cpu_kv_cache_space_gb)
        return env

    async def _healthy(self) -> bool:
        return (await self.client.health()).ok

    async def start(self) -> None:
        try:
            await self.process.start()
        except RuntimeError as exc:
            raise UpstreamError(f"vLLM did not start: {exc}") from exc
        await self.client.refresh_info()

    async def shutdown(self) -> None:
        await self.process.stop()
        await self.client.shutdown()

    def info(self) -> ModelInfo:
        return self.client.info()

    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        return self._generate(request)

    async def _generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        if not self.process.status.ready:
            message = f"the vLLM replica is not ready ({self.process.status.detail})"
            raise Overloaded(message, retry_after=self.process.retry_after())
        async for event in self.client.generate(request):
            yield event

    async def abort(self, request_id: str) -> None:
        await self.client.abort(request_id)

    async def health(self) -> HealthStatus:
        status = self.process.status
        if not status.ready:
            return HealthStatus(False, status.detail)
        remote = await self.client.health()
        return HealthStatus(remote.ok, f"pid {status.pid}, restarts {status.restarts}: {remote.detail}")

    def stats(self) -> EngineStats:
        return self.client.stats()

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await self.client.embed(texts)
