"""The replica's HTTP edges with httpx: limits, bad bodies, request ids, probes, metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmops.serve import ServeConfig

SERVED = "fake-model"
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def http(replica: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=replica.url, timeout=10) as client:
        yield client


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": SERVED, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **extra}


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return dict(body["error"])


def test_body_over_the_limit_is_413_by_content_length(http: httpx.Client) -> None:
    body = json.dumps(_chat(padding="x" * 70_000)).encode()
    error = _error(http.post(CHAT, content=body, headers={"content-type": "application/json"}), 413)
    assert error["code"] == "request_too_large"


def test_body_over_the_limit_is_413_when_streamed_without_length(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "fake-model", "messages": [], "padding": "'
        for _ in range(40):
            yield b"x" * 4096
        yield b'"}'

    response = http.post(CHAT, content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    _error(response, 413)


def test_false_small_content_length_does_not_get_past_the_limit() -> None:
    from llmops.serve.middleware import BodyLimitMiddleware

    received: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        received.append((await receive())["body"])

    sent: list[MutableMapping[str, Any]] = []
    messages = [{"type": "http.request", "body": b"x" * 800, "more_body": True}] * 3

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    import asyncio

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"10")]}
    asyncio.run(BodyLimitMiddleware(app, max_bytes=2000)(scope, receive, send))
    assert received == []
    assert sent[0]["status"] == 413


def test_invalid_json_is_400(http: httpx.Client) -> None:
    error = _error(http.post(CHAT, content=b'{"model": ', headers={"content-type": "application/json"}), 400)
    assert "not valid JSON" in error["message"]
    assert error["type"] == "invalid_request_error"


def test_invalid_utf8_is_400(http: httpx.Client) -> None:
    raw = b'{"model": "fake-model", "messages": [{"role": "user", "content": "\xff\xfe"}]}'
    error = _error(http.post(CHAT, content=raw, headers={"content-type": "application/json"}), 400)
    assert "UTF-8" in error["message"]


@pytest.mark.parametrize(
    ("stop", "fragment"),
    [(["a", "b", "c", "d", "e"], "at most 4"), ([""], "non-empty"), ("", "non-empty"), ([1], "strings")],
)
def test_invalid_stop_is_400_naming_stop(http: httpx.Client, stop: Any, fragment: str) -> None:
    error = _error(http.post(CHAT, json=_chat(stop=stop)), 400)
    assert error["param"] == "stop"
    assert fragment in error["message"]


def test_n_above_the_limit_is_400(http: httpx.Client) -> None:
    error = _error(http.post(CHAT, json=_chat(n=5)), 400)
    assert error["param"] == "n"
    error = _error(http.post(CHAT, json=_chat(n=0)), 400)
    assert error["param"] == "n"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": SERVED}, "messages"),
        ({"model": SERVED, "messages": []}, "messages"),
        ({"model": SERVED, "messages": "hi"}, "messages"),
        ({"model": SERVED, "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"model": SERVED, "messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {
                "model": SERVED,
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            },
            "messages[0].content",
        ),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        (_chat(max_tokens=0), "max_tokens"),
        (_chat(temperature=3), "temperature"),
        (_chat(top_logprobs=21, logprobs=True), "top_logprobs"),
        (_chat(stream_options={"include_usage": True}), "stream_options"),
        (_chat(base_url="http://169.254.169.254/"), "base_url"),
        (_chat(api_base="http://evil/"), "api_base"),
        (_chat(callback_url="http://evil/"), "callback_url"),
        (_chat(tools=[{"type": "function", "function": {"name": "f"}}]), "tools"),
        (_chat(response_format={"type": "json_object"}), "response_format"),
    ],
)
def test_bad_chat_bodies_are_400_naming_the_field(
    http: httpx.Client, body: dict[str, Any], param: str
) -> None:
    error = _error(http.post(CHAT, json=body), 400)
    assert error["param"] == param, error


def test_non_object_body_is_400_not_422(http: httpx.Client) -> None:
    assert "JSON object" in _error(http.post(CHAT, json=[1, 2]), 400)["message"]
    assert "missing" in _error(http.post(CHAT), 400)["message"]
    assert _error(http.get(CHAT), 405)["type"] == "invalid_request_error"
    _error(http.post("/v1/completions", json={"model": SERVED, "prompt": [[1], "a"]}), 400)
    _error(http.post("/v1/completions", json={"model": SERVED, "prompt": []}), 400)
    error = _error(http.post("/v1/completions", json={"model": SERVED, "prompt": "a", "echo": True}), 400)
    assert error["param"] == "echo"


def test_text_parts_are_joined(http: httpx.Client, replica: Any) -> None:
    content = [{"type": "text", "text": "parts "}, {"type": "text", "text": "joined probe"}]
    response = http.post(CHAT, json={"model": SERVED, "messages": [{"role": "user", "content": content}]})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "parts joined probe "


def test_a_whole_answer_reports_engine_time_and_time_to_first_token(http: httpx.Client) -> None:
    """A gateway sees a non-streamed answer only whole; the replica says when its first token came."""
    for path, body in (
        (CHAT, _chat()),
        ("/v1/completions", {"model": SERVED, "prompt": "hi", "max_tokens": 2}),
    ):
        headers = http.post(path, json=body).headers
        ttft, engine = float(headers["x-llmops-ttft-seconds"]), float(headers["x-engine-seconds"])
        assert 0 <= ttft <= engine, path
    streamed = http.post(CHAT, json=_chat(stream=True))
    assert "x-llmops-ttft-seconds" not in streamed.headers, "a stream's first token is seen by the client"


def test_request_id_is_generated_honoured_or_replaced(http: httpx.Client) -> None:
    generated = http.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32
    assert http.get("/healthz").headers["x-request-id"] != generated
    assert (
        http.get("/healthz", headers={"x-request-id": "gw-123.abc"}).headers["x-request-id"] == "gw-123.abc"
    )
    replaced = http.get("/healthz", headers={"x-request-id": "bad id\twith spaces"}).headers["x-request-id"]
    assert replaced != "bad id\twith spaces" and len(replaced) == 32
    assert "x-request-id" in http.post(CHAT, json=_chat(n=99)).headers
    assert "x-request-id" in http.post(CHAT, content=b"{").headers
    assert "x-request-id" in http.get("/nowhere").headers


def test_unknown_route_is_404_in_openai_shape(http: httpx.Client) -> None:
    error = _error(http.get("/v1/nowhere"), 404)
    assert error["type"] == "not_found_error"


def test_unexpected_backend_error_is_a_clean_500(http: httpx.Client) -> None:
    response = http.post(CHAT, json=_chat(messages=[{"role": "user", "content": "CRASH"}]))
    error = _error(response, 500)
    assert "/secret/path" not in response.text and "Traceback" not in response.text
    assert response.headers["x-request-id"] in error["message"]
    response = http.post("/v1/embeddings", json={"model": SERVED, "input": "CRASH"})
    _error(response, 500)


def test_probes(http: httpx.Client, make_replica: Any) -> None:
    assert http.get("/healthz").json() == {"status": "ok", "detail": ""}
    assert http.get("/readyz").json()["status"] == "ready"
    sick = make_replica()
    sick.backend.healthy = False
    response = httpx.get(f"{sick.url}/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "detail": "fake is sick"}
    assert httpx.get(f"{sick.url}/healthz").status_code == 200


def test_lifespan_starts_and_stops_the_backend(make_replica: Any) -> None:
    replica = make_replica()
    assert (replica.backend.started, replica.backend.stopped) == (1, 0)
    replica.stop()
    assert (replica.backend.started, replica.backend.stopped) == (1, 1)


def test_metrics_parse_and_count_requests(make_replica: Any) -> None:
    replica = make_replica(ServeConfig(max_n=2))
    with httpx.Client(base_url=replica.url) as client:
        assert client.post(
            CHAT, json=_chat(messages=[{"role": "user", "content": "a b c"}], max_tokens=3)
        ).is_success
        assert client.post(CHAT, json=_chat(n=3)).status_code == 400
        text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in families["llmops_http_requests"].samples
        if s.name == "llmops_http_requests_total"
    }
    assert requests[(CHAT, "200")] == 1
    assert requests[(CHAT, "400")] == 1

    def sample(name: str) -> float:
        return next(s.value for f in families.values() for s in f.samples if s.name == name)

    assert sample("llmops_prompt_tokens_total") == 3
    assert sample("llmops_completion_tokens_total") == 3
    assert sample("llmops_time_to_first_token_seconds_count") == 1
    assert sample("llmops_time_per_output_token_seconds_count") == 1
    assert sample("llmops_http_request_duration_seconds_count") >= 2
    assert sample("llmops_engine_requests_running") == 2
    assert sample("llmops_engine_kv_cache_usage_ratio") == 0.5
    assert sample("llmops_engine_steps_total") == 1
