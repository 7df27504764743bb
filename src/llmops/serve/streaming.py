"""Drive a ``Fanout`` to its answer: collect it for a JSON body, or stream it as server-sent events.

A stream is ``data: {chunk}`` events, an optional usage chunk, then ``data: [DONE]``. An error after
the stream has started cannot change the status any more: it is sent as ``data: {"error": ...}``
(which OpenAI's clients raise) followed by ``[DONE]``. A choice the engine ends with ``error`` ends
the stream that way too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

from pydantic import BaseModel
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from llmops.engine.types import TokenEvent
from llmops.errors import LLMOpsError
from llmops.serve.choices import ChoiceState, generation_failed, usage
from llmops.serve.fanout import Fanout
from llmops.serve.responses import Usage

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
CLIENT_CLOSED_STATUS = 499  # nginx's "client closed request": nobody reads this answer
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

ChunkRenderer = Callable[[ChoiceState, TokenEvent], Iterable[BaseModel]]
UsageChunk = Callable[[Usage], BaseModel]
OnEnd = Callable[[Sequence[ChoiceState]], None]


def frame(chunk: BaseModel) -> bytes:
    return b"data: " + chunk.model_dump_json(exclude_none=True).encode() + b"\n\n"


def error_frame(error: LLMOpsError) -> bytes:
    return b"data: " + json.dumps(error.to_body(), separators=(",", ":")).encode() + b"\n\n"


def json_response(body: BaseModel, headers: dict[str, str] | None = None) -> Response:
    return Response(body.model_dump_json(), media_type="application/json", headers=headers)


def client_closed() -> Response:
    return Response(status_code=CLIENT_CLOSED_STATUS)


def _log_failed(fanout: Fanout, state: ChoiceState) -> None:
    logger.warning("generation %s failed: %s", fanout.requests[state.index].request_id, state.error)


async def collect(fanout: Fanout, states: Sequence[ChoiceState], on_end: OnEnd) -> bool:
    """Run every choice to its end; False when the client went away first (it was aborted)."""
    try:
        async for batch in fanout.batches():
            for index, event in batch:
                states[index].add(event)
                if event.finish_reason == "error":
                    _log_failed(fanout, states[index])
    finally:
        fanout.close()
        on_end(states)
    return not fanout.disconnected


class _End:
    """Ends a stream once: closes the fan-out and records usage, whoever gets there first."""

    def __init__(self, fanout: Fanout, states: Sequence[ChoiceState], on_end: OnEnd) -> None:
        self.fanout, self.states, self.on_end = fanout, states, on_end
        self.done = False

    def __call__(self) -> None:
        if not self.done:
            self.done = True
            self.fanout.close()
            self.on_end(self.states)


async def _sse(
    fanout: Fanout, states: Sequence[ChoiceState], render: ChunkRenderer, usage_chunk: UsageChunk | None,
    end: _End,
) -> AsyncIterator[bytes]:  # fmt: skip
    try:
        async for batch in fanout.batches():
            frames = []
            for index, event in batch:
                state = states[index]
                state.add(event)
                if event.finish_reason == "error":
                    _log_failed(fanout, state)
                    raise generation_failed()
                frames += [frame(chunk) for chunk in render(state, event)]
            if frames:
                yield b"".join(frames)
        if fanout.disconnected:
            return
        if usage_chunk is not None:
            yield frame(usage_chunk(usage(states)))
        yield DONE
    except LLMOpsError as exc:
        yield error_frame(exc) + DONE
    except Exception:
        logger.exception("stream of %s failed", fanout.requests[0].request_id)
        yield error_frame(LLMOpsError("internal error while streaming")) + DONE
    finally:
        end()


class _FanoutStreamingResponse(StreamingResponse):
    """Ends the fan-out even when the body is never iterated (client gone before the first chunk)."""

    def __init__(self, content: AsyncIterator[bytes], end: _End) -> None:
        super().__init__(content, media_type="text/event-stream", headers=SSE_HEADERS)
        self.end = end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.end()


def sse_response(
    fanout: Fanout, states: Sequence[ChoiceState], render: ChunkRenderer, usage_chunk: UsageChunk | None,
    on_end: OnEnd,
) -> StreamingResponse:  # fmt: skip
    end = _End(fanout, states, on_end)
    return _FanoutStreamingResponse(_sse(fanout, states, render, usage_chunk, end), end)
