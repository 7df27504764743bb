"""Fixtures of the serve tests: a deterministic fake backend and the app on a real uvicorn server.

The fake echoes the words of the prompt back as tokens (one word per event, with a short sleep),
and is steered by markers in the prompt: OVERLOAD (Overloaded), RATELIMIT (RateLimited), TOOLONG
(InvalidInput naming messages), CRASH (a RuntimeError), FAIL (finishes with reason "error"), SLOW
(a token every 50 ms) and HANG (no first token until aborted). It records every request and abort.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI
from tests.servers import serving

from llmops.engine.types import (
    Backend,
    EngineStats,
    GenerationRequest,
    HealthStatus,
    ModelInfo,
    TokenEvent,
    TopLogprob,
)
from llmops.errors import InvalidInput, Overloaded, RateLimited
from llmops.serve import ServeConfig, build_app

SERVED = "fake-model"
ADAPTER = "fake-adapter"
MAX_MODEL_LEN = 64


def prompt_words(request: GenerationRequest) -> list[str]:
    if request.messages is not None:
        text = " ".join(m.content for m in request.messages)
    elif request.prompt is not None:
        text = request.prompt
    else:
        text = " ".join(f"t{t}" for t in request.prompt_token_ids or ())
    return text.split()


@dataclass
class FakeBackend(Backend):
    delay: float = 0.002
    healthy: bool = True
    requests: list[GenerationRequest] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    started: int = 0
    stopped: int = 0
    _abort_events: dict[str, asyncio.Event] = field(default_factory=dict)

    def info(self) -> ModelInfo:
        return ModelInfo(model_id="fake/llama", max_model_len=MAX_MODEL_LEN, adapters=(ADAPTER,))

    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        self.requests.append(request)
        return self._generate(request)

    async def _generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        words = prompt_words(request)
        self._check(request, words)
        aborted = self._abort_events.setdefault(request.request_id, asyncio.Event())
        if "HANG" in words:
            await aborted.wait()
        delay = 0.05 if "SLOW" in words else self.delay
        outputs = words * 100 if "SLOW" in words else words
        limit = request.sampling.max_tokens
        if not outputs:  # nothing to echo: end at once, as an engine does on an immediate end-of-text
            yield self._event(request, words, 0, "", finish="stop")
            return
        for count, word in enumerate(outputs[:limit], start=1):
            await asyncio.sleep(delay)
            if aborted.is_set():
                yield self._event(request, words, count - 1, "", finish="abort")
                return
            finish = None
            if "FAIL" in words and count == 2:
                yield self._event(request, words, count, "", finish="error", error="boom in /secret/path")
                return
            if count == min(limit, len(outputs)):
                finish = "length" if count == limit else "stop"
            yield self._event(request, words, count, word + " ", finish=finish)

    def _check(self, request: GenerationRequest, words: list[str]) -> None:
        if "OVERLOAD" in words:
            raise Overloaded("the engine queue is full", retry_after=2)
        if "RATELIMIT" in words:
            raise RateLimited("upstream rate limit", retry_after=7)
        if "TOOLONG" in words or len(words) + request.sampling.max_tokens > MAX_MODEL_LEN:
            raise InvalidInput(
                f"prompt ({len(words)} tokens) plus max_tokens ({request.sampling.max_tokens}) "
                f"exceeds the context of {MAX_MODEL_LEN} tokens",
                param="max_tokens",
            )
        if "CRASH" in words:
            raise RuntimeError("unexpected engine bug at /secret/path")

    def _event(
        self, request: GenerationRequest, words: list[str], count: int, text: str, *,
        finish: str | None = None, error: str | None = None,
    ) -> TokenEvent:  # fmt: skip
        sampling = request.sampling
        tops = tuple(
            TopLogprob(token_id=100 + k, token=f"{text.strip() or '?'}{k or ''}", logprob=-0.5 - k)
            for k in range(sampling.top_logprobs)
        )
        return TokenEvent(
            request_id=request.request_id,
            token_id=100 if text else None,
            text=text,
            prompt_tokens=len(words),
            completion_tokens=count,
            logprob=-0.5 if sampling.logprobs and text else None,
            top_logprobs=tops if text else (),
            finish_reason=finish,  # type: ignore[arg-type]
            error=error,
            cached_prompt_tokens=1,
        )

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)
        self._abort_events.setdefault(request_id, asyncio.Event()).set()

    async def health(self) -> HealthStatus:
        return HealthStatus(ok=self.healthy, detail="fake" if self.healthy else "fake is sick")

    def stats(self) -> EngineStats:
        return EngineStats(
            waiting=1, running=2, kv_blocks_total=10, kv_blocks_used=5, steps=len(self.requests)
        )

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if any("CRASH" in t for t in texts):
            raise RuntimeError("embedding bug")
        return [[float(len(t.split())), 1.0, 0.5] for t in texts]

    def count_tokens(self, text: str) -> int | None:
        return len(text.split())

    async def start(self) -> None:
        self.started += 1

    async def shutdown(self) -> None:
        self.stopped += 1


@contextmanager
def running_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn (uvloop, httptools) on an ephemeral loopback port in a thread."""
    with serving(app, loop="uvloop", http="httptools") as url:
        yield url


@dataclass
class Replica:
    url: str
    backend: FakeBackend
    app: FastAPI
    stop: Callable[[], None]

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"


@pytest.fixture
def fake_backend() -> FakeBackend:
    return FakeBackend()


class _Servers:
    """Apps started on real servers, stopped (in reverse) when the owning fixture ends."""

    def __init__(self) -> None:
        self._stops: list[Callable[[], None]] = []

    def start(self, app: FastAPI) -> tuple[str, Callable[[], None]]:
        manager = running_server(app)
        url = manager.__enter__()
        stopped = False

        def stop() -> None:
            nonlocal stopped
            if not stopped:
                stopped = True
                manager.__exit__(None, None, None)

        self._stops.append(stop)
        return url, stop

    def stop_all(self) -> None:
        for stop in reversed(self._stops):
            stop()


@pytest.fixture
def serve_app() -> Iterator[Callable[[FastAPI], tuple[str, Callable[[], None]]]]:
    """Run any app on a real server for this test: ``url, stop = serve_app(app)``."""
    servers = _Servers()
    yield servers.start
    servers.stop_all()


@pytest.fixture(scope="module")
def serve_app_module() -> Iterator[Callable[[FastAPI], tuple[str, Callable[[], None]]]]:
    """``serve_app`` for module-scoped fixtures."""
    servers = _Servers()
    yield servers.start
    servers.stop_all()


@pytest.fixture
def make_replica(serve_app: Callable[[FastAPI], tuple[str, Callable[[], None]]]) -> Callable[..., Replica]:
    """Start a replica over a fresh fake backend; ``make_replica(config=..., backend=...)``."""

    def start(config: ServeConfig | None = None, backend: FakeBackend | None = None) -> Replica:
        backend = backend or FakeBackend()
        app = build_app(backend, SERVED, config or ServeConfig())
        url, stop = serve_app(app)
        return Replica(url, backend, app, stop)

    return start


@pytest.fixture(scope="module")
def replica() -> Iterator[Replica]:
    """One replica shared by a module's tests (read-only use: each test looks at its own requests)."""
    backend = FakeBackend()
    app = build_app(backend, SERVED, ServeConfig(max_n=4, max_body_bytes=64 * 1024))
    with running_server(app) as url:
        yield Replica(url, backend, app, lambda: None)


def _wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def wait_until() -> Callable[..., bool]:
    """``wait_until(predicate, timeout=3.0)``: poll until true; returns the last answer."""
    return _wait_until
