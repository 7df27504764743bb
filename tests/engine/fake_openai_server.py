"""A fake OpenAI-compatible server (raw ASGI on uvicorn) for the remote-backend tests.

Streams the words of ``WORDS`` (``max_tokens`` of them) as completion or chat-completion chunks,
then a usage chunk and ``[DONE]``. Model names switch behaviours: ``slow`` streams forever with a
pause between chunks, ``overloaded`` answers 503 with Retry-After, ``bad`` answers 400, ``broken``
cuts the stream without a finish reason. Also serves ``/health``, ``/v1/models`` and
``/v1/embeddings``. Run as a script to serve on a port: ``python fake_openai_server.py PORT``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

WORDS = ["Hello", " wor", "ld", ",", " fake", " tokens", " all", " the", " way", " down"]


class FakeOpenAI:
    def __init__(self, max_model_len: int = 2048) -> None:
        self.max_model_len = max_model_len
        self.bodies: list[dict[str, Any]] = []
        self.disconnects = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if scope["method"] == "GET":
            if path == "/health":
                await _json(send, 200, {})
            elif path == "/v1/models":
                await _json(send, 200, {"data": [{"id": "fake", "max_model_len": self.max_model_len}]})
            else:
                await _json(send, 404, {"error": {"message": "no such path"}})
            return
        body = json.loads(await _body(receive))
        self.bodies.append(body)
        if path == "/v1/embeddings":
            data = [{"index": i, "embedding": [float(len(t)), 1.0]} for i, t in enumerate(body["input"])]
            await _json(send, 200, {"data": data})
            return
        model = body.get("model")
        if model == "overloaded":
            await _json(send, 503, {"error": {"message": "busy"}}, [(b"retry-after", b"7")])
        elif model == "bad":
            await _json(send, 400, {"error": {"message": "max_tokens is too large", "param": "max_tokens"}})
        else:
            await self._stream(path, body, receive, send)

    async def _stream(self, path: str, body: dict[str, Any], receive: Any, send: Any) -> None:
        chat = path == "/v1/chat/completions"
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        slow = body.get("model") == "slow"
        count = 10**6 if slow else int(body.get("max_tokens", 5))
        gone = asyncio.ensure_future(_disconnected(receive))
        if chat:
            await _event(
                send, {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
            )
        for i in range(count):
            if slow:
                await asyncio.sleep(0.05)
            if gone.done():
                self.disconnects += 1
                return
            last = i == count - 1
            word = WORDS[i % len(WORDS)]
            choice: dict[str, Any] = {"index": 0, "finish_reason": "length" if last else None}
            if chat:
                choice["delta"] = {"content": word}
            else:
                choice["text"] = word
            if body.get("model") == "broken" and last:
                break
            await _event(send, {"choices": [choice]})
        if body.get("model") != "broken":
            prompt = body.get("prompt", body.get("messages"))
            usage = {
                "prompt_tokens": len(prompt),
                "completion_tokens": count,
                "total_tokens": len(prompt) + count,
            }
            await _event(send, {"choices": [], "usage": usage})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        gone.cancel()


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _body(receive: Any) -> bytes:
    chunks = b""
    while True:
        message = await receive()
        chunks += message.get("body", b"")
        if not message.get("more_body"):
            return chunks


async def _json(send: Any, status: int, payload: dict[str, Any], extra: list[Any] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


async def _event(send: Any, payload: dict[str, Any]) -> None:
    data = f"data: {json.dumps(payload)}\n\n".encode()
    await send({"type": "http.response.body", "body": data, "more_body": True})


@contextmanager
def serving(app: FakeOpenAI) -> Iterator[str]:
    """Serve ``app`` on an ephemeral loopback port in a thread; yields the base URL."""
    from tests.servers import serving as serve_app

    with serve_app(app, lifespan="off") as url:
        yield url


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(FakeOpenAI(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
