"""The replica's OpenAPI document states what its validation enforces (found by schemathesis)."""

from __future__ import annotations

from typing import Any

from tests.reliability.conftest import FakeBackend

from llmops.serve import ServeConfig, build_app


def _document() -> dict[str, Any]:
    return build_app(FakeBackend(), "fake-model", ServeConfig()).openapi()


def test_metrics_are_documented_as_text() -> None:
    content = _document()["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["text/plain"]


def test_prompt_schema_accepts_a_string_and_refuses_empty_lists() -> None:
    prompt = _document()["components"]["schemas"]["CompletionRequest"]["properties"]["prompt"]
    shapes = prompt["anyOf"]
    assert {"type": "string"} in shapes
    assert all(shape.get("minItems") == 1 for shape in shapes if shape["type"] == "array")


def test_top_logprobs_requires_logprobs_in_the_schema() -> None:
    chat = _document()["components"]["schemas"]["ChatCompletionRequest"]
    assert chat["then"] == {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}}
