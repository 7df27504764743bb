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
    thens = [condition["then"] for condition in chat["allOf"]]
    assert {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}} in thens


def test_stream_options_require_stream_in_the_schema() -> None:
    completion = _document()["components"]["schemas"]["CompletionRequest"]
    thens = [condition["then"] for condition in completion["allOf"]]
    assert {"required": ["stream"], "properties": {"stream": {"const": True}}} in thens


def test_configured_limits_are_in_the_schema() -> None:
    config = ServeConfig(max_n=3, max_top_logprobs=5, max_prompts_per_request=2, max_embedding_inputs=7)
    schemas = build_app(FakeBackend(), "fake-model", config).openapi()["components"]["schemas"]
    n = schemas["CompletionRequest"]["properties"]["n"]["anyOf"][0]
    assert n["maximum"] == 3
    assert schemas["ChatCompletionRequest"]["properties"]["top_logprobs"]["anyOf"][0]["maximum"] == 5
    embedding_list = schemas["EmbeddingRequest"]["properties"]["input"]["anyOf"][1]
    assert embedding_list["maxItems"] == 7
    best_of_pairs = [s for s in schemas["CompletionRequest"]["anyOf"] if "n" in s.get("required", [])]
    assert [p["properties"]["n"]["const"] for p in best_of_pairs] == [1, 2, 3]


def test_every_route_documents_the_error_schema_and_no_422() -> None:
    document = _document()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            for status in ("400", "413", "500"):
                schema = responses[status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)


def test_streaming_routes_document_server_sent_events() -> None:
    paths = _document()["paths"]
    for path in ("/v1/chat/completions", "/v1/completions"):
        content = paths[path]["post"]["responses"]["200"]["content"]
        assert set(content) == {"application/json", "text/event-stream"}
