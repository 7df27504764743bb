"""A mock OpenAI-compatible replica (raw ASGI, no engine), for gateway tests and the benchmark.

Answers ``{name}: tok tok ...`` with ``max_tokens`` tokens (default 5), streamed as SSE chunks when
asked, with usage when ``stream_options.include_usage`` is set. Run as a script to serve it on a
port (prints the port): ``python mock_upstream.py --name r1 --port 0 --token-delay 0.01`` (also
``--first-delay S``, ``--fail-status 500`` and ``--max-concurrent N``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class MockUpstream:
    name: str = "mock"
    token_delay: float = 0.0
    first_delay: float = 0.0
    fail_status: int | None = None
    healthy: bool = True
    engine_seconds: float | None = None
    ttft_seconds: float | None = None  # reported on whole answers, as llmops replicas do
    max_concurrent: int | None = None  # like an engine's batch: more requests wait for a slot
    calls: list[dict[str, Any]] = field(default_factory=list)
    _slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["method"] == "GET":
            status = 200 if self.healthy else 503
            await _json(send, status, {"ok": self.healthy})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body)
        self.calls.append(request)
        if self.fail_status is not None:
            await _json(send, self.fail_status, {"error": {"message": f"{self.name} failing", "type": "x"}})
            return
        if self.max_concurrent is not None and self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent)
        async with self._slots or contextlib.nullcontext():
            await asyncio.sleep(self.first_delay)
            if request.get("stream"):
                await self._stream(scope, request, send)
            else:
                await self._whole(scope, request, send)

    def _tokens(self, request: dict[str, Any]) -> list[str]:
        count = int(request.get("max_tokens") or request.get("max_completion_tokens") or 5)
        return [f"{self.name}:"] + [" tok"] * (count - 1)

    def _headers(self, content_type: bytes) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", content_type)]
        if self.engine_seconds is not None:
            headers.append((b"x-engine-seconds", str(self.engine_seconds).encode()))
        if self.ttft_seconds is not None and content_type == b"application/json":
            headers.append((b"x-llmops-ttft-seconds", str(self.ttft_seconds).encode()))
        return headers

    async def _whole(self, scope: dict[str, Any], request: dict[str, Any], send: Any) -> None:
        tokens = self._tokens(request)
        if self.token_delay:
            await asyncio.sleep(self.token_delay * len(tokens))
        text = "".join(tokens)
        chat = scope["path"].endswith("/chat/completions")
        choice = {"index": 0, "finish_reason": "length"}
        choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
        payload = {
            "id": _response_id(chat),
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": request.get("model"),
            "choices": [choice],
            "usage": {"prompt_tokens": 7, "completion_tokens": len(tokens), "total_tokens": 7 + len(tokens)},
        }
        await send(
            {"type": "http.response.start", "status": 200, "headers": self._headers(b"application/json")}
        )
        await send({"type": "http.response.body", "body": json.dumps(payload).encode()})

    async def _stream(self, scope: dict[str, Any], request: dict[str, Any], send: Any) -> None:
        chat = scope["path"].endswith("/chat/completions")
        await send(
            {"type": "http.response.start", "status": 200, "headers": self._headers(b"text/event-stream")}
        )
        tokens, response_id = self._tokens(request), _response_id(chat)
        for index, token in enumerate(tokens):
            if self.token_delay and index:
                await asyncio.sleep(self.token_delay)
            choice: dict[str, Any] = {"index": 0, "finish_reason": None}
            choice.update({"delta": {"content": token}} if chat else {"text": token})
            chunk = {
                "id": response_id,
                "object": "chat.completion.chunk",
                "created": 0,
                "model": request.get("model"),
            }
            await _event(send, {**chunk, "choices": [choice]})
        if (request.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 7, "completion_tokens": len(tokens), "total_tokens": 7 + len(tokens)}
            await _event(
                send, {"id": "cmpl-mock", "object": "chat.completion.chunk", "choices": [], "usage": usage}
            )
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


async def _event(send: Any, payload: dict[str, Any]) -> None:
    await send(
        {
            "type": "http.response.body",
            "body": b"data: " + json.dumps(payload).encode() + b"\n\n",
            "more_body": True,
        }
    )


def _response_id(chat: bool) -> str:
    """Unique per answer, shaped like OpenAI's (and llmops serve's)."""
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"


async def _json(send: Any, status: int, payload: dict[str, Any]) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="mock")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--first-delay", type=float, default=0.0, help="Seconds before the first token.")
    parser.add_argument("--fail-status", type=int, default=None, help="Answer every request with it.")
    parser.add_argument("--max-concurrent", type=int, default=None, help="Answers generated at once.")
    args = parser.parse_args()
    sock = socket.socket()
    sock.bind(("127.0.0.1", args.port))
    print(sock.getsockname()[1], flush=True)
    app = MockUpstream(
        args.name,
        token_delay=args.token_delay,
        first_delay=args.first_delay,
        fail_status=args.fail_status,
        max_concurrent=args.max_concurrent,
    )
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    sys.exit(0)


if __name__ == "__main__":
    main()
