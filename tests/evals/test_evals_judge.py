"""LLM-as-judge against a real local OpenAI-compatible test server: good, garbage, errors, down."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from llmops.errors import InvalidInput
from llmops.evals.judge import JudgeFailure, parse_verdict
from llmops.evals.metric_base import EvalExample, MetricResources
from llmops.evals.metric_specs import JudgeSpec
from llmops.evals.metrics import build_metric
from llmops.evals.results import MetricResult

# What the fake judge answers, chosen by the "model" field of the request.
ANSWERS: dict[str, str] = {
    "good": '{"score": 4, "reason": "correct but wordy"}',
    "fenced": '```json\n{"score": 5, "reason": "perfect"}\n```',
    "garbage": "I would say this deserves a solid four!",
    "out-of-range": '{"score": 9, "reason": "great"}',
    "boolean": '{"score": true, "reason": "yes"}',
    "fractional": '{"score": 3.5, "reason": "meh"}',
    "slow": '{"score": 5, "reason": "too late"}',
}


class FakeJudge(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeJudge.requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        model = body["model"]
        if model == "slow":
            time.sleep(1.0)
        if model == "http500":
            self._send(500, b'{"error": {"message": "overloaded"}}')
        elif model == "http401":
            self._send(401, b'{"error": {"message": "bad key"}}')
        elif model == "not-a-completion":
            self._send(200, b'{"id": "x", "object": "chat.completion"}')
        elif model == "html":
            self._send(200, b"<html>gateway</html>")
        else:
            answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWERS[model]}}]}
            self._send(200, json.dumps(answer).encode())

    def _send(self, status: int, payload: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test)


@pytest.fixture(scope="module")
def judge_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


EXAMPLE = EvalExample(example_id="0", prompt="What is the capital of France?")


def judge(base_url: str, model: str, **overrides: Any) -> MetricResult:
    spec = JudgeSpec(name="judge", base_url=base_url, model=model, rubric="Correct and concise.", **overrides)
    metric = build_metric(spec, MetricResources(env={"JUDGE_KEY": "sk-test"}))
    try:
        return metric.score("Paris, obviously.", "Paris", EXAMPLE)
    finally:
        metric.close()


def test_good_verdict_is_scored_and_traced(judge_url: str) -> None:
    FakeJudge.requests.clear()
    result = judge(judge_url, "good", api_key_env="JUDGE_KEY")
    assert result.value == 4.0 and result.error is None
    assert result.judge is not None
    assert result.judge.reason == "correct but wordy" and result.judge.raw_verdict == ANSWERS["good"]
    assert "Correct and concise." in result.judge.prompt and "Paris, obviously." in result.judge.prompt
    (request,) = FakeJudge.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    assert request["body"]["model"] == "good" and request["body"]["temperature"] == 0.0
    assert "Reference answer" in request["body"]["messages"][1]["content"]


def test_fenced_json_verdict_is_accepted(judge_url: str) -> None:
    assert judge(judge_url, "fenced").value == 5.0


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("garbage", "not JSON"),
        ("out-of-range", "outside 1..5"),
        ("boolean", "no integer 'score'"),
        ("fractional", "no integer 'score'"),
        ("http401", "HTTP 401"),
        ("http500", "HTTP 500"),
        ("not-a-completion", "not an OpenAI chat completion"),
        ("html", "not an OpenAI chat completion"),
    ],
)
def test_bad_answers_are_errors_never_passes(judge_url: str, model: str, reason: str) -> None:
    result = judge(judge_url, model, retries=0)
    assert result.value is None and result.error is not None and reason in result.error
    assert result.judge is not None and result.judge.prompt  # the prompt is kept for debugging


def test_garbage_verdict_keeps_raw_answer(judge_url: str) -> None:
    result = judge(judge_url, "garbage")
    assert result.judge is not None and result.judge.raw_verdict == ANSWERS["garbage"]


def test_server_error_is_retried(judge_url: str) -> None:
    FakeJudge.requests.clear()
    result = judge(judge_url, "http500", retries=1)
    assert result.errored and len(FakeJudge.requests) == 2


def test_endpoint_down_is_an_error() -> None:
    result = judge(closed_port_url(), "good", retries=0)
    assert result.value is None and "unreachable" in (result.error or "")


def test_timeout_is_an_error(judge_url: str) -> None:
    result = judge(judge_url, "slow", timeout_s=0.2, retries=0)
    assert result.value is None and "timed out" in (result.error or "")


def test_missing_api_key_env_fails_before_any_call(judge_url: str) -> None:
    spec = JudgeSpec(
        name="judge", base_url=judge_url, model="good", rubric="r", api_key_env="NOT_SET_ANYWHERE"
    )
    with pytest.raises(InvalidInput, match=r"\$NOT_SET_ANYWHERE"):
        build_metric(spec, MetricResources(env={}))


def test_parse_verdict_strictness() -> None:
    assert parse_verdict('{"score": 2, "reason": "weak"}', min_score=1, max_score=5) == (2.0, "weak")
    assert parse_verdict('{"score": 3.0}', min_score=1, max_score=5) == (3.0, "")
    for raw in ("[4]", '{"reason": "no score"}', '{"score": "4"}', '{"score": 0}', '{"score": NaN}'):
        with pytest.raises(JudgeFailure):
            parse_verdict(raw, min_score=1, max_score=5)
