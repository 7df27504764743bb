"""VLLMBackend: supervision (start, health wait, restart with backoff, stop) against a fake vLLM
module, and the real vLLM server when ``LLMOPS_TEST_VLLM_PYTHON`` names an environment with it."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import httpx
import pytest

from llmops.engine.types import GenerationRequest, SamplingParams
from llmops.engine.vllm_backend import VLLMBackend, VLLMConfig
from llmops.errors import Overloaded

REPO_ROOT = Path(__file__).resolve().parents[2]
FAKE_SERVER = """
import argparse, os
import uvicorn
from tests.engine.fake_openai_server import FakeOpenAI

class Crashable:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/crash":
            os._exit(3)
        await self.app(scope, receive, send)

parser = argparse.ArgumentParser()
for name in ("--model", "--host", "--port", "--served-model-name"):
    parser.add_argument(name)
args, _ = parser.parse_known_args()
uvicorn.run(Crashable(FakeOpenAI()), host=args.host, port=int(args.port), log_level="warning")
"""


def fake_vllm_environment(root: Path) -> dict[str, str]:
    package = root / "vllm" / "entrypoints" / "openai"
    package.mkdir(parents=True)
    for folder in (root / "vllm", root / "vllm" / "entrypoints", package):
        (folder / "__init__.py").write_text("")
    (package / "api_server.py").write_text(FAKE_SERVER)
    return {"PYTHONPATH": os.pathsep.join([str(root), str(REPO_ROOT)])}


@pytest.mark.slow
def test_supervisor_starts_restarts_and_stops_the_server(tmp_path: Path) -> None:
    config = VLLMConfig(
        python=Path(sys.executable),
        model_dir=tmp_path / "fake",
        env=fake_vllm_environment(tmp_path / "site"),
        log_path=tmp_path / "vllm.log",
        startup_timeout_s=60,
        backoff_initial_s=0.2,
        cpu_kv_cache_space_gb=2,
    )
    backend = VLLMBackend(config)
    assert backend.command()[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert backend.environment()["VLLM_CPU_KVCACHE_SPACE"] == "2"

    async def scenario() -> None:
        await backend.start()
        try:
            assert (await backend.health()).ok
            first_pid = backend.process.status.pid
            events = [
                e
                async for e in backend.generate(
                    GenerationRequest("v1", SamplingParams(max_tokens=3), prompt="x")
                )
            ]
            assert events[-1].finish_reason == "length"
            async with httpx.AsyncClient() as client:
                with pytest.raises(httpx.HTTPError):
                    await client.post(f"{backend.base_url}/crash")
            await wait_for(lambda: not backend.process.status.ready)
            with pytest.raises(Overloaded) as refused:
                [e async for e in backend.generate(GenerationRequest("v2", prompt="x"))]
            assert refused.value.retry_after is not None
            assert await backend.process.wait_ready(60)
            assert backend.process.status.restarts == 1 and backend.process.status.pid != first_pid
            assert backend.process.status.last_exit_code == 3
            events = [
                e
                async for e in backend.generate(
                    GenerationRequest("v3", SamplingParams(max_tokens=2), prompt="x")
                )
            ]
            assert events[-1].finish_reason == "length"
        finally:
            await backend.shutdown()
        assert not (await backend.health()).ok

    asyncio.run(scenario())


async def wait_for(predicate: object, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < end
        await asyncio.sleep(0.02)


@pytest.mark.slow
def test_real_vllm_server(tiny_model_dir: Path, tmp_path: Path) -> None:
    python = os.environ.get("LLMOPS_TEST_VLLM_PYTHON")
    if not python:
        pytest.skip("LLMOPS_TEST_VLLM_PYTHON is not set: point it at the python of an environment with vLLM")
    config = VLLMConfig(
        python=Path(python),
        model_dir=tiny_model_dir,
        log_path=tmp_path / "vllm.log",
        cpu_kv_cache_space_gb=1,
        max_model_len=256,
        extra_args=("--dtype", "float32", "--enforce-eager"),
    )
    backend = VLLMBackend(config)

    async def scenario() -> None:
        await backend.start()
        try:
            sampling = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
            events = [e async for e in backend.generate(GenerationRequest("real", sampling, prompt="hello"))]
            assert events[-1].finish_reason == "length" and events[-1].completion_tokens == 8
        finally:
            await backend.shutdown()

    asyncio.run(scenario())
