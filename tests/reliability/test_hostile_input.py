"""Hostile input on every HTTP entry point that parses something: never a 5xx, never a hang.

JSON bodies at each parser limit (depth, number size, duplicate keys, non-JSON constants,
encodings, lone surrogates), headers, and query strings, sent to the gateway and to a replica.
Each answer must be a 4xx naming what was wrong, within a bounded time.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from tests.reliability.conftest import FakeBackend

from llmops.security.roles import Role
from llmops.serve import ServeConfig, build_app
from llmops.store.home import Home

pytestmark = pytest.mark.anyio

CHAT = {"model": "support-bot", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}
_PREFIX = b'{"model":"support-bot","messages":[{"role":"user","content":"hi"}],'


def _with(field: bytes) -> bytes:
    return _PREFIX + field + b"}"


HOSTILE_BODIES: dict[str, tuple[bytes, str]] = {
    "deep_array": (_with(b'"x":' + b"[" * 100_000 + b"]" * 100_000), "nested deeper"),
    "deep_object": (_with(b'"x":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000), "nested deeper"),
    "deep_but_parsable": (_with(b'"x":' + b"[" * 500 + b"]" * 500), "nested deeper"),
    "huge_integer": (_with(b'"max_tokens":' + b"9" * 5000), "digits"),
    "huge_float": (_with(b'"temperature":1' + b"0" * 400 + b".5"), "characters"),
    "overflowing_float": (_with(b'"temperature":1e999999'), "overflows"),
    "nan": (_with(b'"temperature":NaN'), "NaN is not JSON"),
    "infinity": (_with(b'"temperature":-Infinity'), "-Infinity is not JSON"),
    "duplicate_model": (b'{"model":"support-bot","model":"other","messages":[]}', "duplicate key 'model'"),
    "duplicate_nested": (_with(b'"stream_options":{"include_usage":1,"include_usage":0}'), "duplicate"),
    "utf16": (json.dumps(CHAT).encode("utf-16"), "not UTF-8"),
    "latin1": ('{"model":"support-bot","prompt":"caf\xe9"}'.encode("latin-1"), "UTF-8"),
    "lone_surrogate": (_with(b'"user":"\\ud800"'), "lone surrogate"),
    "surrogate_key": (_with(b'"\\udfff":1'), "lone surrogate"),
    "truncated": (b'{"model":"support-bot","messages":[', "not valid JSON"),
    "not_an_object": (b"[1,2,3]", "JSON object"),
    "empty": (b"", "JSON"),
    "nul_bytes": (b"\x00" * 64, "not valid JSON"),
}  # fmt: skip

ANSWER_WITHIN_S = 5.0


def _assert_refused(case: str, response: httpx.Response, elapsed: float, needle: str) -> None:
    assert elapsed < ANSWER_WITHIN_S, f"{case}: took {elapsed:.1f}s"
    assert 400 <= response.status_code < 500, f"{case}: {response.status_code} {response.text[:300]}"
    error = response.json()["error"]
    assert needle.lower() in error["message"].lower(), f"{case}: {error['message']}"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/feedback"])
async def test_gateway_refuses_hostile_json_bodies(path: str, home: Home, make_key: Any, gw: Any) -> None:
    headers = {**gw.bearer(make_key(Role.CONSUMER)), "content-type": "application/json"}
    mock = gw.in_process(**{"support-bot": gw.MockUpstream("r1")})
    async with gw.client(home, gw.config(), in_process=mock) as (client, _):
        for case, (body, needle) in HOSTILE_BODIES.items():
            if path == "/v1/completions":
                body = body.replace(b'"messages"', b'"prompt"', 1)
            started = time.monotonic()
            response = await client.post(path, content=body, headers=headers)
            _assert_refused(case, response, time.monotonic() - started, needle)


@pytest.fixture
async def replica_client() -> Any:
    app = build_app(FakeBackend(), "fake-model", ServeConfig(max_body_bytes=4 << 20))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
        yield client


@pytest.mark.parametrize("case", list(HOSTILE_BODIES))
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
async def test_replica_refuses_hostile_json_bodies(case: str, path: str, replica_client: Any) -> None:
    body, needle = HOSTILE_BODIES[case]
    if case == "not_an_object":
        needle = "not a JSON object"
    elif case == "empty":
        needle = "missing"
    started = time.monotonic()
    response = await replica_client.post(path, content=body, headers={"content-type": "application/json"})
    _assert_refused(case, response, time.monotonic() - started, needle)


HOSTILE_HEADERS: dict[str, tuple[dict[str, Any], int]] = {
    "long_bearer": ({"authorization": "Bearer " + "x" * 12_000}, 401),
    "non_ascii_bearer": ({"authorization": b"Bearer \xff\xfe\x00key"}, 401),
    "basic_auth": ({"authorization": "Basic dXNlcjpwYXNz"}, 401),
    "empty_bearer": ({"authorization": "Bearer "}, 401),
    "header_past_the_limit": ({"authorization": "Bearer k", "x-pad": "p" * 40_000}, 431),
    "many_headers": ({**{f"x-h{i}": "v" * 40 for i in range(600)}, "authorization": "Bearer k"}, 431),
}


async def test_gateway_refuses_hostile_headers(home: Home, make_key: Any, gw: Any) -> None:
    key = make_key(Role.CONSUMER)
    async with gw.client(home, gw.config()) as (client, _):
        for case, (headers, status) in HOSTILE_HEADERS.items():
            started = time.monotonic()
            response = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
            assert time.monotonic() - started < ANSWER_WITHIN_S, case
            assert response.status_code == status, f"{case}: {response.status_code} {response.text[:200]}"
            assert response.json()["error"]["message"], case
        weird_id = {**gw.bearer(key), "x-request-id": "\u00e9" * 300}
        response = await client.get("/v1/models", headers={k: v.encode() for k, v in weird_id.items()})
        assert response.status_code == 200 and response.headers["x-request-id"].isascii()


HOSTILE_QUERIES: dict[str, tuple[str, str]] = {
    "huge_limit": ("/api/requests?limit=" + "9" * 5000, "limit"),
    "negative_limit": ("/api/monitor/alerts?limit=-1", "limit"),
    "status_not_a_number": ("/api/requests?status=abc", "status"),
    "status_out_of_range": ("/api/requests?status=99999999999999999999", "status"),
    "since_garbage": ("/api/requests?since=%ff%fe", "since"),
    "bad_enum": ("/api/requests/export?format=exe", "format"),
    "bad_alert_status": ("/api/monitor/alerts?status=%00", "status"),
}


async def test_gateway_refuses_hostile_query_strings(home: Home, make_key: Any, gw: Any) -> None:
    headers = gw.bearer(make_key(Role.ADMIN))
    async with gw.client(home, gw.config()) as (client, _):
        for case, (url, param) in HOSTILE_QUERIES.items():
            started = time.monotonic()
            response = await client.get(url, headers=headers)
            assert time.monotonic() - started < ANSWER_WITHIN_S, case
            assert response.status_code == 400, f"{case}: {response.status_code} {response.text[:200]}"
            assert param in response.json()["error"]["message"], f"{case}: {response.text[:200]}"
        long_text = await client.get("/api/requests?text=" + "a" * 20_000, headers=headers)
        assert long_text.status_code < 500, long_text.text[:200]
        repeated = await client.get("/api/requests?" + "&".join(["user=u"] * 2000), headers=headers)
        assert repeated.status_code < 500, repeated.text[:200]


async def test_replica_refuses_hostile_headers_and_paths(replica_client: Any) -> None:
    weird_id = {"x-request-id": ("a\u00e9" * 100).encode()}
    odd = await replica_client.get("/v1/models/%ff%00..%2f..%2fetc", headers=weird_id)
    assert odd.status_code == 404 and odd.headers["x-request-id"].isascii()
    typed = await replica_client.post("/v1/embeddings", content=b'{"model":"fake-model","input":"x"}',
                                      headers={"content-type": "text/plain"})  # fmt: skip
    assert 400 <= typed.status_code < 500, typed.text[:200]
