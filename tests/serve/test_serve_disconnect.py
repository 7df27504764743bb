"""A client that goes away has its backend requests aborted promptly, streamed or not."""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

SERVED = "fake-model"
CHAT = "/v1/chat/completions"


def _ids_of(replica: Any, marker: str) -> list[str]:
    return [r.request_id for r in replica.backend.requests if marker in str(r.messages or r.prompt)]


def test_streaming_client_disconnect_aborts_the_backend_request(make_replica: Any, wait_until: Any) -> None:
    replica = make_replica()
    body = {"model": SERVED, "messages": [{"role": "user", "content": "SLOW stream"}], "stream": True}
    with (
        httpx.Client(base_url=replica.url, timeout=10) as client,
        client.stream("POST", CHAT, json=body) as r,
    ):
        assert r.status_code == 200
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
    closed_at = time.monotonic()
    (request_id,) = _ids_of(replica, "SLOW stream")
    assert wait_until(lambda: request_id in replica.backend.aborted, timeout=2.0)
    assert time.monotonic() - closed_at < 2.0


@pytest.mark.parametrize("marker", ["SLOW", "HANG"])
def test_client_leaving_before_a_plain_answer_aborts_it(
    make_replica: Any, wait_until: Any, marker: str
) -> None:
    replica = make_replica()
    body = {"model": SERVED, "messages": [{"role": "user", "content": f"{marker} plain"}], "n": 2}
    with httpx.Client(base_url=replica.url, timeout=0.3) as client, pytest.raises(httpx.ReadTimeout):
        client.post(CHAT, json=body)
    ids = _ids_of(replica, f"{marker} plain")
    assert len(ids) == 2
    assert wait_until(lambda: set(ids) <= set(replica.backend.aborted), timeout=2.0)


def test_stream_disconnect_while_waiting_for_the_first_token_aborts(
    make_replica: Any, wait_until: Any
) -> None:
    replica = make_replica()
    url = urlparse(replica.url)
    payload = (
        b'{"model": "fake-model", "stream": true, "messages": [{"role": "user", "content": "HANG raw"}]}'
    )
    request = (
        f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(request)
        assert wait_until(lambda: len(_ids_of(replica, "HANG raw")) == 1, timeout=2.0)
    (request_id,) = _ids_of(replica, "HANG raw")
    assert wait_until(lambda: request_id in replica.backend.aborted, timeout=2.0)


def test_finished_requests_are_not_aborted(make_replica: Any) -> None:
    replica = make_replica()
    body = {"model": SERVED, "messages": [{"role": "user", "content": "done quickly"}], "n": 2}
    assert httpx.post(f"{replica.url}{CHAT}", json=body).status_code == 200
    time.sleep(0.05)
    assert replica.backend.aborted == []


def test_a_failing_choice_aborts_its_siblings(make_replica: Any, wait_until: Any) -> None:
    replica = make_replica()
    body = {"model": SERVED, "prompt": ["SLOW sibling", "OVERLOAD"], "max_tokens": 50}
    response = httpx.post(f"{replica.url}/v1/completions", json=body)
    assert response.status_code == 503
    (slow_id,) = _ids_of(replica, "SLOW sibling")
    assert wait_until(lambda: slow_id in replica.backend.aborted, timeout=2.0)


def test_a_stream_whose_client_left_before_the_first_chunk_is_still_closed() -> None:
    import asyncio

    from starlette.requests import ClientDisconnect

    from llmops.serve.streaming import sse_response

    class StubFanout:
        disconnected = False
        requests: list[Any] = []
        closed = 0

        async def batches(self) -> Any:
            await asyncio.sleep(3600)
            yield []

        def close(self) -> None:
            self.closed += 1

    fanout = StubFanout()
    ended: list[Any] = []
    response = sse_response(fanout, [], lambda s, e: [], None, ended.append)  # type: ignore[arg-type]

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        raise OSError("connection reset")  # the server could not even send the headers

    scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
    with pytest.raises(ClientDisconnect):
        asyncio.run(asyncio.wait_for(response(scope, receive, send), timeout=5))
    assert fanout.closed == 1
    assert ended == [[]]
