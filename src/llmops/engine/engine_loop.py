"""The engine thread: runs ``LLMEngine.step()`` in a loop and feeds asyncio consumers.

The blocking step runs on one dedicated thread that owns the engine. Callers on event loops talk to
it only through a command inbox (add, abort, call) and receive ``TokenEvent``s on per-request
``asyncio.Queue``s, handed over with ``loop.call_soon_threadsafe`` once per step and loop. Commands
are applied between steps, so an abort frees its blocks within one step. Nothing that goes wrong
in a step stops the loop: failed requests end with finish reason "error" and the loop goes on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from llmops.engine.llm_engine import LLMEngine, StepOutput
from llmops.engine.output_processor import OutputProcessor
from llmops.engine.sequence import Sequence
from llmops.engine.types import EngineStats, FinishReason, TokenEvent

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RequestStream:
    """Where one request's events go: a queue read on the caller's event loop."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[TokenEvent]
    processor: OutputProcessor


@dataclass(frozen=True)
class _Add:
    seq: Sequence
    stream: RequestStream


@dataclass(frozen=True)
class _Abort:
    request_id: str
    done: concurrent.futures.Future[bool]


@dataclass(frozen=True)
class _Call:
    fn: Callable[[], Any]
    done: concurrent.futures.Future[Any]


@dataclass(frozen=True)
class _Stop:
    pass


_Command = _Add | _Abort | _Call | _Stop


class EngineLoop:
    """Owns the engine thread. All public methods are safe to call from any thread."""

    def __init__(self, engine: LLMEngine, name: str = "llmops-engine") -> None:
        self.engine = engine
        self.name = name
        self._inbox: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._streams: dict[str, RequestStream] = {}
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stats = engine.stats()
        self.last_step_error: str | None = None
        self.shut_down = False

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        with self._lock:
            self.shut_down = False
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        thread = self._thread
        self.shut_down = True
        if thread is None:
            return
        self._inbox.put(_Stop())
        thread.join(timeout)
        self._thread = None

    def submit(self, seq: Sequence, stream: RequestStream) -> None:
        self._inbox.put(_Add(seq, stream))

    def abort(self, request_id: str) -> concurrent.futures.Future[bool]:
        """Abort ``request_id``; the future says whether it was still running once it is freed."""
        done: concurrent.futures.Future[bool] = concurrent.futures.Future()
        self._inbox.put(_Abort(request_id, done))
        return done

    def call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn`` on the engine thread between steps (model changes, embeddings)."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._inbox.put(_Call(fn, done))
        return done

    def stats(self) -> EngineStats:
        return self._stats

    def _run(self) -> None:
        # torch keeps the intra-op thread count per OS thread (OpenMP): set it on the engine thread.
        torch.set_num_threads(self.engine.config.threads)
        while True:
            try:
                if not self._apply_commands(block=not self.engine.has_work()):
                    break
                self._deliver(self.engine.step())
            except Exception as exc:  # a bug outside one request's work: fail what is in flight
                logger.exception("engine step failed")
                self.last_step_error = f"{type(exc).__name__}: {exc}"
                self._fail_all(self.last_step_error)
            self._stats = self.engine.stats()
        self._fail_all("the engine was shut down", reason="abort")
        self._refuse_pending()

    def _refuse_pending(self) -> None:
        """Answer the commands that arrived after the stop, so no caller waits forever."""
        while True:
            try:
                command = self._inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(command, _Add):
                self.engine.admission.release(command.seq.num_prompt_tokens)
                stream = command.stream
                event = stream.processor.final("abort", "the engine was shut down")
                self._send({stream.loop: [(stream, event)]})
            elif isinstance(command, _Abort):
                command.done.set_result(False)
            elif isinstance(command, _Call):
                command.done.set_exception(RuntimeError("the engine was shut down"))

    def _apply_commands(self, block: bool) -> bool:
        """Apply queued commands (waiting for one when idle); False once told to stop."""
        while True:
            try:
                command = self._inbox.get(timeout=self._idle_timeout()) if block else self._inbox.get_nowait()
            except queue.Empty:
                return True
            if isinstance(command, _Stop):
                return False
            self._apply(command)
            block = False

    def _idle_timeout(self) -> float | None:
        deadline = self.engine.next_deadline()
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def _apply(self, command: _Command) -> None:
        if isinstance(command, _Add):
            self._streams[command.seq.request_id] = command.stream
            try:
                self.engine.add(command.seq)
            except Exception as exc:  # e.g. its adapter was unloaded after validation
                self.engine.admission.release(command.seq.num_prompt_tokens)
                stream = self._streams.pop(command.seq.request_id)
                self._send({stream.loop: [(stream, stream.processor.final("error", str(exc)))]})
        elif isinstance(command, _Abort):
            seq = self.engine.abort(command.request_id)
            listener = self._streams.pop(command.request_id, None)
            if listener is not None:
                self._send({listener.loop: [(listener, listener.processor.final("abort"))]})
            self._stats = self.engine.stats()
            command.done.set_result(seq is not None)
        elif isinstance(command, _Call):
            try:
                command.done.set_result(command.fn())
            except Exception as exc:
                command.done.set_exception(exc)

    def _deliver(self, outputs: list[StepOutput]) -> None:
        batches: dict[asyncio.AbstractEventLoop, list[tuple[RequestStream, TokenEvent]]] = {}
        for out in outputs:
            stream = self._streams.get(out.request_id)
            if stream is None:
                continue
            try:
                event, stopped = stream.processor.process(out)
            except Exception as exc:  # detokenising one request's output must not fail the others
                logger.exception("output processing failed for %s", out.request_id)
                self.engine.abort(out.request_id, reason="error")
                event, stopped = stream.processor.final("error", f"{type(exc).__name__}: {exc}"), False
            if stopped:
                # A stop string ended it: free the blocks before the next step computes more.
                self.engine.abort(out.request_id, reason="stop")
            if event.finish_reason is not None:
                del self._streams[out.request_id]
            batches.setdefault(stream.loop, []).append((stream, event))
        self._send(batches)

    def _send(self, batches: dict[asyncio.AbstractEventLoop, list[tuple[RequestStream, TokenEvent]]]) -> None:
        # Refresh the snapshot first: a consumer that sees its last event must see its blocks freed.
        self._stats = self.engine.stats()
        for loop, items in batches.items():
            try:
                loop.call_soon_threadsafe(_put_all, items)
            except RuntimeError:  # the consumer's loop is closed: nobody listens any more
                for stream, _ in items:
                    self.engine.abort(stream.processor.request_id)
                    self._streams.pop(stream.processor.request_id, None)

    def _fail_all(self, error: str, reason: FinishReason = "error") -> None:
        batches: dict[asyncio.AbstractEventLoop, list[tuple[RequestStream, TokenEvent]]] = {}
        for request_id, stream in list(self._streams.items()):
            self.engine.abort(request_id, reason=reason)
            event = stream.processor.final(reason, error)
            batches.setdefault(stream.loop, []).append((stream, event))
        self._streams.clear()
        self._send(batches)


def _put_all(items: list[tuple[RequestStream, TokenEvent]]) -> None:
    for stream, event in items:
        stream.queue.put_nowait(event)
