"""Relaying a streamed answer (SSE) to the client, event by event, and ending it honestly.

The stream ends with ``data: [DONE]`` only when the replica finished it; a replica that breaks
off, ends without ``[DONE]`` or runs past the total timeout gives the client an SSE error event
instead, never a silently truncated answer. That event, and an error event of the replica itself,
carry a generic message with the request id; what happened (replica, its error) goes to the
request's row. The final ``[DONE]`` is held until the request is
finished (budget settled, log row queued or, in strict mode, committed). A client that goes away
ends the relay; its request is charged what the replica produced so far.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.responses import Response

from llmops.errors import LLMOpsError
from llmops.gateway.forward import Attempt, Forwarder
from llmops.gateway.outcome import Outcome, RequestContext
from llmops.gateway.pricing import engine_seconds
from llmops.gateway.sse import DONE, EventSplitter, StreamAccount, error_event
from llmops.gateway.upstreams import UpstreamDisconnected

log = logging.getLogger(__name__)
Finish = Callable[[RequestContext, Outcome], Awaitable[None]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class RelayResponse(Response):
    """An ASGI response that relays one upstream stream (the endpoint returns it as is)."""

    def __init__(self, ctx: RequestContext, attempt: Attempt, forwarder: Forwarder, finish: Finish) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = list(SSE_HEADERS)
        self.ctx, self.attempt, self.forwarder, self._finish = ctx, attempt, forwarder, finish

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await relay(self.ctx, self.attempt, self.forwarder, self._finish, send)


async def _chunks(attempt: Attempt) -> AsyncIterator[bytes]:
    if attempt.first:
        yield attempt.first
    async for chunk in attempt.response.body:
        yield chunk


async def _pump(ctx: RequestContext, attempt: Attempt, account: StreamAccount, send: Send) -> float | None:
    """Forward events until [DONE] or the end of the upstream; returns the time to first token."""
    splitter, ttft = EventSplitter(), None
    async for chunk in _chunks(attempt):
        for event in splitter.feed(chunk):
            had_error = account.upstream_error is not None
            usage_only = account.observe(event)
            if account.upstream_error is not None and not had_error:
                event = error_event(_generic(ctx), "upstream_stream_failed")
            if ttft is None and account.content_chunks:
                ttft = time.monotonic() - ctx.started
            if account.done:
                return ttft
            if usage_only and not ctx.parsed.include_usage:
                continue
            await send({"type": "http.response.body", "body": event, "more_body": True})
    return ttft


async def relay(
    ctx: RequestContext, attempt: Attempt, forwarder: Forwarder, finish: Finish, send: Send
) -> None:
    account, error, client_gone, ttft = StreamAccount(), None, False, None
    notice: str | None = None
    total = ctx.deployment.config.timeouts.total_s
    try:
        await send({"type": "http.response.start", "status": 200, "headers": list(SSE_HEADERS)})
        async with asyncio.timeout(max(0.001, total - ctx.elapsed())):
            ttft = await _pump(ctx, attempt, account, send)
        if not account.done:
            error = f"replica {attempt.replica.name} ended the stream before finishing the answer"
    except UpstreamDisconnected as exc:
        error = f"replica {attempt.replica.name} broke off the stream: {exc}"
    except TimeoutError:
        error = f"the answer took longer than the total timeout of {total:g}s"
    except OSError:
        client_gone = True
    finally:
        await forwarder.release(attempt, ok=error is None)
        failed = error or account.upstream_error  # the replica's own error event was sent generic
        outcome = Outcome(
            200 if failed is None and not client_gone else (499 if client_gone else 502),
            attempt.arm.name,
            attempt.model_version,
            attempt.replica.name,
            prompt_tokens=account.prompt_tokens,
            completion_tokens=account.completion_tokens
            if account.completion_tokens is not None
            else account.content_chunks,
            completion=account.completion,
            ttft_s=ttft,
            engine_seconds=engine_seconds(attempt.response.headers, ctx.elapsed()),
            error=failed,
            charged=failed is None,
            response_id=account.response_id if failed is None else None,
        )
        try:
            await finish(ctx, outcome)
        except LLMOpsError as exc:  # strict mode: the row could not be committed; say so
            notice = exc.message
            error = error or exc.message
        if error:
            log.warning("request %s: %s", ctx.request_id, error)
    if client_gone:
        return
    body = error_event(notice or _generic(ctx), "upstream_stream_failed") if error else DONE
    try:
        await send({"type": "http.response.body", "body": body, "more_body": False})
    except OSError:
        return


def _generic(ctx: RequestContext) -> str:
    return (
        f"the answer of deployment {ctx.deployment.name!r} broke off; retry, or report request "
        f"{ctx.request_id} to the operator"
    )
