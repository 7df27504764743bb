"""End to end over real HTTP: the official openai client through the gateway, streams, failures."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from llmops.gateway.app import create_app
from llmops.security.roles import Role
from llmops.store.home import Home
from llmops.store.schema import GatewayRequest

pytestmark = pytest.mark.anyio


def _rows(home: Home, expected: int, timeout: float = 5.0) -> list[GatewayRequest]:
    deadline = time.monotonic() + timeout
    while True:
        with home.store.read() as session:
            rows = list(session.execute(select(GatewayRequest).order_by(GatewayRequest.ts)).scalars())
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_openai_client_through_the_gateway(home: Home, make_key: Any, gw: Any) -> None:
    key = make_key(name="app")
    with gw.serve(gw.MockUpstream("r1")) as upstream:
        config = gw.config(gw.deployment("support-bot", upstreams=[{"url": upstream}]))
        with gw.serve(create_app(config, home)) as gateway_url:
            client = openai.OpenAI(base_url=gateway_url + "/v1", api_key=key, max_retries=0)
            answer = client.chat.completions.create(
                model="support-bot", messages=[{"role": "user", "content": "hi"}], max_tokens=4, user="u1"
            )
            assert answer.choices[0].message.content == "r1: tok tok tok"
            assert answer.usage is not None and answer.usage.completion_tokens == 4
            chunks = list(
                client.chat.completions.create(
                    model="support-bot",
                    messages=[{"role": "user", "content": "hi"}],
                    max_tokens=3,
                    stream=True,
                )
            )
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "r1: tok tok"
            assert all(c.choices for c in chunks), "the usage chunk the gateway asked for is not passed on"
            text = client.completions.create(model="support-bot", prompt="once", max_tokens=2)
            assert text.choices[0].text == "r1: tok"
            assert [m.id for m in client.models.list()] == ["support-bot"]
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=gateway_url + "/v1", api_key="sk-wrong", max_retries=0).models.list()
            with pytest.raises(openai.NotFoundError, match="support-bot"):
                client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    rows = _rows(home, 5)
    assert [r.status for r in rows if r.status != 200] == [404]
    done = [r for r in rows if r.status == 200]
    assert len(done) == 3 and {r.endpoint for r in done} == {"chat", "completions"}
    first = next(r for r in done if r.user == "u1")
    assert first.completion == "r1: tok tok tok" and first.completion_tokens == 4 and first.prompt == "hi"
    assert first.cost_usd == pytest.approx((7 * 1.0 + 4 * 2.0) / 1000)
    streamed = next(r for r in done if r.stream)
    assert streamed.completion == "r1: tok tok" and streamed.ttft_ms is not None and streamed.key_id


async def test_upstream_down_gives_502_and_no_replica_503(home: Home, make_key: Any, gw: Any) -> None:
    key = make_key()
    dead = gw.deployment("support-bot", upstreams=[{"url": "http://127.0.0.1:9"}], max_retries=1)
    config = gw.config(dead, health={"failure_threshold": 1, "cooldown_s": 60})
    async with gw.client(home, config) as (client, _):
        first = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
        assert first.status_code == 502
        message = first.json()["error"]["message"]
        assert "could not be served" in message and first.headers["x-request-id"] in message
        assert "127.0.0.1:9" not in first.text  # the address is for operators: in the row
        second = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
        assert second.status_code == 503 and second.json()["error"]["code"] == "no_healthy_replica"
        assert (await client.get("/readyz")).status_code == 503
    errors = {r.id: r.error or "" for r in _rows(home, 2)}
    assert "127.0.0.1:9" in errors[first.headers["x-request-id"]]
    assert "no replica is healthy" in errors[second.headers["x-request-id"]]


async def test_retry_moves_to_another_replica_before_the_first_byte(
    home: Home, make_key: Any, gw: Any
) -> None:
    key = make_key()
    broken, good = gw.MockUpstream("broken", fail_status=502), gw.MockUpstream("good")
    config = gw.config(gw.deployment("support-bot", max_retries=1))
    mocks = gw.in_process(**{"support-bot": broken})
    mocks["support-bot"] += gw.in_process(**{"x": good})["x"]
    async with gw.client(home, config, mocks) as (client, _):
        for _ in range(4):
            answer = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
            assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"].startswith(
                "good"
            )


async def test_fallback_deployment(home: Home, make_key: Any, gw: Any) -> None:
    key = make_key()
    config = gw.config(
        gw.deployment("support-bot", fallbacks=["backup"], max_retries=0), gw.deployment("backup")
    )
    mocks = gw.in_process(
        **{"support-bot": gw.MockUpstream("main", fail_status=503), "backup": gw.MockUpstream("bk")}
    )
    async with gw.client(home, config, mocks) as (client, _):
        answer = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"].startswith(
            "bk"
        )


def _start_mock_process(gw: Any, name: str, token_delay: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, str(gw.mock_script), "--name", name, "--token-delay", str(token_delay)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/healthz", timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("mock replica did not start")


async def _collect_stream(
    client: httpx.AsyncClient, key: str, user: str, started: list[str] | None = None
) -> list[dict[str, Any]]:
    body = {
        "model": "support-bot",
        "messages": [{"role": "user", "content": user}],
        "max_tokens": 60,
        "stream": True,
    }
    events: list[dict[str, Any]] = []
    async with client.stream(
        "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                data = line[6:]
                events.append({"done": True} if data == "[DONE]" else json.loads(data))
                if started is not None and len(events) == 1:
                    started.append(user)
    return events


@pytest.mark.slow
def test_killing_a_replica_mid_stream_gives_its_streams_a_clean_error(
    home: Home, make_key: Any, gw: Any
) -> None:
    key = make_key(Role.CONSUMER)
    victim, victim_url = _start_mock_process(gw, "victim", 0.05)
    survivor, survivor_url = _start_mock_process(gw, "survivor", 0.05)
    try:
        upstreams = [{"url": victim_url, "name": "victim"}, {"url": survivor_url, "name": "survivor"}]
        config = gw.config(gw.deployment("support-bot", upstreams=upstreams))
        with gw.serve(create_app(config, home, active_health_checks=False)) as gateway_url:

            async def scenario() -> list[list[dict[str, Any]]]:
                async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
                    started: list[str] = []
                    tasks = [
                        asyncio.create_task(_collect_stream(client, key, f"u{i}", started)) for i in range(6)
                    ]
                    deadline = time.monotonic() + 20
                    while len(started) < 6 and time.monotonic() < deadline:  # every stream is under way
                        await asyncio.sleep(0.02)
                    victim.send_signal(signal.SIGKILL)
                    return await asyncio.gather(*tasks)

            results = asyncio.run(scenario())
    finally:
        for process in (victim, survivor):
            process.kill()
            process.wait()
    killed = [events for events in results if events and "error" in events[-1]]
    finished = [events for events in results if events and events[-1] == {"done": True}]
    assert killed and finished and len(killed) + len(finished) == 6
    for events in killed:
        assert "victim" not in events[-1]["error"]["message"] and {"done": True} not in events
        assert events[0]["choices"][0]["delta"]["content"].startswith("victim")
    for events in finished:
        text = "".join(e["choices"][0]["delta"]["content"] for e in events[:-1] if e.get("choices"))
        assert text == "survivor:" + " tok" * 59
    rows = _rows(home, 6)
    assert sorted(r.status for r in rows) == sorted([502] * len(killed) + [200] * len(finished))
    assert all("victim" in (r.error or "") for r in rows if r.status == 502)  # operators keep the detail


async def test_first_token_and_total_timeouts(home: Home, make_key: Any, gw: Any) -> None:
    key = make_key()
    slow_start = gw.MockUpstream("late", first_delay=2.0)
    timeouts = {"connect_s": 0.5, "first_token_s": 0.2, "total_s": 0.6}
    config = gw.config(gw.deployment("support-bot", timeouts=timeouts, max_retries=0))
    async with gw.client(home, config, gw.in_process(**{"support-bot": slow_start})) as (client, _):
        late = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
        assert late.status_code == 502 and late.headers["x-request-id"] in late.json()["error"]["message"]
    slow_stream = gw.MockUpstream("slow", token_delay=0.1)
    async with gw.client(home, config, gw.in_process(**{"support-bot": slow_stream})) as (client, _):
        body = gw.chat_body(stream=True, max_tokens=30)
        cut = await client.post("/v1/chat/completions", json=body, headers=gw.bearer(key))
        events = [line[6:] for line in cut.text.splitlines() if line.startswith("data: ")]
        assert "[DONE]" not in events and "broke off" in json.loads(events[-1])["error"]["message"]
        assert 2 <= len(events) <= 9  # some tokens arrived before the cut
    errors = {r.id: r.error or "" for r in _rows(home, 2)}
    assert "no first byte within 0.7s" in errors[late.headers["x-request-id"]]
    assert "total timeout of 0.6s" in errors[cut.headers["x-request-id"]]


async def test_a_whole_answer_that_stalls_after_its_head_is_cut_at_the_total_timeout(
    home: Home, make_key: Any, gw: Any
) -> None:
    """Over HTTP (the gateway's own client): an answer that arrived whole is passed on; one whose
    body stops coming is cut at the total timeout (a 502), not at the read timeout."""
    body = b'{"id":"chatcmpl-1","choices":[{"message":{"content":"hi"}}]}'
    whole = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )

    async def replica(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # keep-alive: the gateway reuses the connection
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            if json.loads(await reader.readexactly(length))["max_tokens"] == 1:
                writer.write(whole)
                continue
            writer.write(whole[: whole.index(b"\r\n\r\n") + 10])  # the head, part of the body
            await finished.wait()  # then nothing
            writer.close()
            return

    finished = asyncio.Event()
    server = await asyncio.start_server(replica, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    timeouts = {"connect_s": 1, "first_token_s": 3, "total_s": 0.5}
    config = gw.config(
        gw.deployment("support-bot", upstreams=[{"url": url}], timeouts=timeouts, max_retries=0)
    )
    key = make_key()
    try:
        async with gw.client(home, config) as (client, _):
            ok = await client.post(
                "/v1/chat/completions", json=gw.chat_body(max_tokens=1), headers=gw.bearer(key)
            )
            started = time.monotonic()
            cut = await client.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
            waited = time.monotonic() - started
    finally:
        finished.set()
        await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "hi"
    assert cut.status_code == 502 and cut.json()["error"]["code"] == "upstream_broke_off"
    assert waited < 2.5  # the total timeout (0.5 s), not the read timeout (3 s)
    errors = {r.id: r.error or "" for r in _rows(home, 2)}
    assert "did not finish its answer: total timeout" in errors[cut.headers["x-request-id"]]
