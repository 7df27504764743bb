"""``OpenAIBackend``: the ``Backend`` contract over any remote OpenAI-compatible server.

Streams ``/v1/completions`` (prompt or token ids) or ``/v1/chat/completions`` (messages) with
httpx, one pooled client per event loop. An upstream that cannot be reached, times out or breaks
the protocol is an ``UpstreamError`` before the first event and a final event with finish reason
"error" after it. ``abort`` ends a stream at once, without waiting for the next chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from llmops.engine.openai_protocol import (
    ChunkDelta,
    endpoint,
    error_from_response,
    parse_chunk,
    parse_sse_line,
    request_body,
)
from llmops.engine.types import (
    Backend,
    EngineStats,
    FinishReason,
    GenerationRequest,
    HealthStatus,
    ModelInfo,
    TokenEvent,
)
from llmops.errors import LLMOpsError, UpstreamError


@dataclass
class _StreamState:
    """Counts of one remote stream, turned into cumulative ``TokenEvent`` fields."""

    request_id: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    finish_reason: FinishReason | None = None
    final_text: list[str] = field(default_factory=list)

    def absorb_usage(self, delta: ChunkDelta) -> None:
        if delta.prompt_tokens is not None:
            self.prompt_tokens = delta.prompt_tokens
        if delta.completion_tokens is not None:
            self.completion_tokens = delta.completion_tokens
        if delta.cached_prompt_tokens is not None:
            self.cached_prompt_tokens = delta.cached_prompt_tokens

    def event(self, text: str, delta: ChunkDelta | None = None, error: str | None = None) -> TokenEvent:
        return TokenEvent(
            request_id=self.request_id,
            token_id=None,
            text=text,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            logprob=delta.logprob if delta else None,
            top_logprobs=delta.top_logprobs if delta else (),
            finish_reason=self.finish_reason,
            error=error,
            cached_prompt_tokens=self.cached_prompt_tokens,
        )


class OpenAIBackend(Backend):
    """A remote OpenAI-compatible server (vLLM, another llmops replica, a hosted API)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        *,
        max_model_len: int = 0,
        connect_timeout: float = 10.0,
        transport: Any = None,
    ) -> None:
        # Accept both "http://host:port" and "http://host:port/v1".
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_model_len = max_model_len
        self._transport = transport
        self._clients: dict[asyncio.AbstractEventLoop, Any] = {}
        self._aborts: dict[str, asyncio.Event] = {}
        self._adapters: tuple[str, ...] = ()

    def info(self) -> ModelInfo:
        return ModelInfo(self.model, self.max_model_len, self._adapters)

    def _client(self) -> Any:
        import httpx

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=headers,
                timeout=httpx.Timeout(self.timeout, connect=min(self.connect_timeout, self.timeout)),
                transport=self._transport,
            )
            self._clients[loop] = client
        return client

    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        return self._generate(request)

    async def _generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        import httpx

        body = request_body(request, self.model)
        state = _StreamState(request.request_id)
        aborted = self._aborts.setdefault(request.request_id, asyncio.Event())
        started = False
        try:
            async with self._client().stream("POST", endpoint(request), json=body) as response:
                if response.status_code >= 400:
                    raw = await response.aread()
                    raise error_from_response(response.status_code, raw, response.headers.get("retry-after"))
                async for event in self._events(response, state, aborted):
                    started = True
                    yield event
        except (httpx.HTTPError, UpstreamError) as exc:
            message = _describe(exc, self.base_url)
            if not started:
                raise UpstreamError(message) from exc
            state.finish_reason = "error"
            yield state.event("", error=message)
        finally:
            self._aborts.pop(request.request_id, None)

    async def _events(
        self, response: Any, state: _StreamState, aborted: asyncio.Event
    ) -> AsyncIterator[TokenEvent]:
        lines = response.aiter_lines().__aiter__()
        abort_wait = asyncio.ensure_future(aborted.wait())
        try:
            while True:
                # Race the next line against abort(): a quiet upstream must not delay the abort.
                next_line = asyncio.ensure_future(lines.__anext__())
                await asyncio.wait({next_line, abort_wait}, return_when=asyncio.FIRST_COMPLETED)
                if abort_wait.done():
                    next_line.cancel()
                    state.finish_reason = "abort"
                    yield state.event("".join(state.final_text))
                    return
                try:
                    line = next_line.result()
                except StopAsyncIteration:
                    break
                event = self._on_line(line, state)
                if event is not None:
                    yield event
        finally:
            abort_wait.cancel()
        if state.finish_reason is None:
            raise UpstreamError("the upstream closed the stream before a finish reason")
        yield state.event("".join(state.final_text))

    @staticmethod
    def _on_line(line: str, state: _StreamState) -> TokenEvent | None:
        chunk = parse_sse_line(line)
        if chunk is None:
            return None
        delta = parse_chunk(chunk)
        state.absorb_usage(delta)
        if not delta.has_choice:
            return None
        if delta.finish_reason is not None:
            # Held until the stream ends: the usage chunk (counts) comes after the finish chunk.
            state.finish_reason = delta.finish_reason
            state.final_text.append(delta.text)
            return None
        if not delta.text and delta.logprob is None:
            return None  # a role-only chat delta
        if delta.completion_tokens is None:
            state.completion_tokens += 1
        return state.event(delta.text, delta)

    async def abort(self, request_id: str) -> None:
        event = self._aborts.get(request_id)
        if event is not None:
            event.set()

    async def health(self) -> HealthStatus:
        import httpx

        try:
            response = await self._client().get("/health")
            if response.status_code == 404:
                response = await self._client().get("/v1/models")
        except httpx.HTTPError as exc:
            return HealthStatus(False, _describe(exc, self.base_url))
        return HealthStatus(response.status_code == 200, f"HTTP {response.status_code}")

    async def refresh_info(self) -> ModelInfo:
        """Read the served models (and vLLM's max_model_len) from ``/v1/models``."""
        payload = await self._get_json("/v1/models")
        cards = [c for c in payload.get("data", []) if isinstance(c, dict)]
        ours = next((c for c in cards if c.get("id") == self.model), None)
        if ours is not None and isinstance(ours.get("max_model_len"), int):
            self.max_model_len = ours["max_model_len"]
        self._adapters = tuple(str(c["id"]) for c in cards if c.get("parent") == self.model)
        return self.info()

    def stats(self) -> EngineStats:
        return EngineStats(running=len(self._aborts))

    async def embed(self, texts: list[str]) -> list[list[float]]:
        payload = await self._post_json("/v1/embeddings", {"model": self.model, "input": texts})
        data = sorted(payload.get("data", []), key=lambda item: item.get("index", 0))
        if len(data) != len(texts):
            raise UpstreamError("the upstream returned a different number of embeddings than inputs")
        return [[float(x) for x in item["embedding"]] for item in data]

    async def _get_json(self, path: str) -> dict[str, Any]:
        return await self._request_json("GET", path, None)

    async def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request_json("POST", path, body)

    async def _request_json(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        import httpx

        try:
            response = await self._client().request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise UpstreamError(_describe(exc, self.base_url)) from exc
        if response.status_code >= 400:
            raise error_from_response(
                response.status_code, response.content, response.headers.get("retry-after")
            )
        try:
            payload = response.json()
        except ValueError as exc:
            raise UpstreamError(f"the upstream answered {path} with something that is not JSON") from exc
        if not isinstance(payload, dict):
            raise UpstreamError(f"the upstream answered {path} with something that is not an object")
        return payload

    async def shutdown(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            with contextlib.suppress(RuntimeError):  # its loop may be closed already
                await client.aclose()


def _describe(exc: BaseException, base_url: str) -> str:
    if isinstance(exc, LLMOpsError):
        return exc.message
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return f"the upstream at {base_url} timed out"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect to the upstream at {base_url}"
    return f"the upstream at {base_url} failed: {type(exc).__name__}"
