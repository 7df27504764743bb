"""Run one HTTP request's choices on the backend at once, merge their events, abort what is left.

Contract of ``Fanout``:

- ``start()`` starts every backend generation and waits until each has produced its first event.
  An error before any output (``InvalidInput``, ``Overloaded``) aborts the other choices and is
  raised, so the handler can still answer with a status code. Returns False if the client went away
  first.
- ``batches()`` yields lists of ``(choice index, event)`` in arrival order (all that are ready at
  once, so a stream writes them together) until every choice has finished, or the client went away
  (``disconnected`` is then True). An exception from a backend stream is raised.
- ``close()`` (idempotent; handlers call it in ``finally``) stops the pumps and the disconnect
  watch and aborts every backend request that has not finished. The aborts run on a detached task
  that the service keeps: a cancelled handler (the client went away) cannot interrupt them.

The client's disconnect is watched by reading ``receive`` (the body has been read by then), so a
client that leaves while the engine is still queueing or prefilling is noticed at once, not at the
next token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive

from llmops.engine.types import Backend, GenerationRequest, TokenEvent
from llmops.errors import LLMOpsError, UpstreamError
from llmops.serve.metrics import ServeMetrics

logger = logging.getLogger(__name__)

ENGINE_SECONDS_HEADER = "x-engine-seconds"
TTFT_HEADER = "x-llmops-ttft-seconds"


@dataclass(frozen=True)
class _Item:
    index: int
    event: TokenEvent | None = None
    error: Exception | None = None


class Fanout:
    def __init__(
        self,
        backend: Backend,
        requests: Sequence[GenerationRequest],
        receive: Receive,
        *,
        background: set[asyncio.Task[None]],
        metrics: ServeMetrics | None = None,
    ) -> None:
        self.backend = backend
        self.requests = list(requests)
        self.disconnected = False
        self._receive = receive
        self._background = background
        self._metrics = metrics
        self._created = time.perf_counter()
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._ready: list[asyncio.Future[None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._finished: set[int] = set()
        self._closed = False
        self.first_token_at: float | None = None

    def timing_headers(self) -> dict[str, str]:
        """What a gateway in front cannot see in an answer it receives whole: the engine's seconds on
        this request (``x-engine-seconds``, for time-priced models) and the seconds to its first
        generated token, any choice (``x-llmops-ttft-seconds``, absent when none was generated)."""
        headers = {ENGINE_SECONDS_HEADER: f"{time.perf_counter() - self._created:.6f}"}
        if self.first_token_at is not None:
            headers[TTFT_HEADER] = f"{self.first_token_at - self._created:.6f}"
        return headers

    async def start(self) -> bool:
        loop = asyncio.get_running_loop()
        watch = loop.create_task(self._watch_disconnect())
        self._tasks.append(watch)
        self._ready = [loop.create_future() for _ in self.requests]
        self._tasks += [loop.create_task(self._pump(i, r)) for i, r in enumerate(self.requests)]
        all_ready = asyncio.gather(*self._ready)
        first: set[asyncio.Future[Any]] = {all_ready, watch}
        try:
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            all_ready.cancel()
            self.close()
            raise
        if all_ready.done() and all_ready.exception() is None:
            return True
        all_ready.cancel()
        self.close()
        errors = [e for f in self._ready if f.done() and not f.cancelled() and (e := f.exception())]
        if errors and not self.disconnected:
            raise next((e for e in errors if isinstance(e, LLMOpsError)), errors[0])
        return False

    async def batches(self) -> AsyncIterator[list[tuple[int, TokenEvent]]]:
        remaining = len(self.requests)
        while remaining:
            items = [await self._queue.get()]
            while not self._queue.empty():
                items.append(self._queue.get_nowait())
            batch: list[tuple[int, TokenEvent]] = []
            for item in items:
                if item is None:
                    return
                if item.error is not None:
                    raise item.error
                assert item.event is not None
                batch.append((item.index, item.event))
                if item.event.finish_reason is not None:
                    remaining -= 1
            yield batch

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for ready in self._ready:
            ready.cancel()  # a choice that fails from now on has no one to tell
        unfinished = [r.request_id for i, r in enumerate(self.requests) if i not in self._finished]
        if unfinished:
            task = asyncio.get_running_loop().create_task(self._abort(unfinished))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _abort(self, request_ids: list[str]) -> None:
        for request_id in request_ids:
            try:
                await self.backend.abort(request_id)
            except Exception:
                logger.exception("backend.abort(%s) failed", request_id)

    async def _watch_disconnect(self) -> None:
        try:
            while (await self._receive())["type"] != "http.disconnect":
                pass
        except Exception:  # the server could not read the connection: the client is gone too
            logger.debug("receive failed while watching for a disconnect", exc_info=True)
        self.disconnected = True
        self._queue.put_nowait(None)

    async def _pump(self, index: int, request: GenerationRequest) -> None:
        ready = self._ready[index]
        first_token_at: float | None = None
        stream = self.backend.generate(request)
        try:
            async for event in stream:
                if not ready.done():
                    ready.set_result(None)
                if first_token_at is None and event.completion_tokens > 0:
                    first_token_at = time.perf_counter()
                    self._observe_first_token(first_token_at)
                if event.finish_reason is not None:
                    self._finished.add(index)
                    self._observe_finish(event, first_token_at)
                self._queue.put_nowait(_Item(index, event=event))
                if event.finish_reason is not None:
                    return
            raise UpstreamError("the engine ended a generation without a finish reason")
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                self._queue.put_nowait(_Item(index, error=exc))
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _observe_first_token(self, now: float) -> None:
        if self.first_token_at is None:
            self.first_token_at = now
        if self._metrics is not None:
            self._metrics.ttft.observe(now - self._created)

    def _observe_finish(self, event: TokenEvent, first_token_at: float | None) -> None:
        if self._metrics is not None and first_token_at is not None and event.completion_tokens > 1:
            decode = time.perf_counter() - first_token_at
            self._metrics.tpot.observe(decode / (event.completion_tokens - 1))
