"""The replica's OpenAPI document with the limits of its ``ServeConfig``.

The request models state the fixed rules; the limits a server is configured with (``max_n``,
``max_top_logprobs``, ``max_prompts_per_request``, ``max_embedding_inputs``, which bounds classify
too) are written into the document here, so a body the schema allows is one this replica accepts.
``best_of`` must equal ``n`` (a JSON Schema cannot compare two fields, so the pairs up to ``max_n``
are listed).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from llmops.openapi_contract import finish_document
from llmops.serve.config import ServeConfig


def install_document(app: FastAPI, config: ServeConfig, models: list[str]) -> None:
    """Make ``app.openapi()`` return FastAPI's document finished with ``config``'s limits and the
    names of the served ``models`` as examples of ``model``."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = with_limits(finish_document(generate()), config)
            schemas = document["components"]["schemas"]
            for name in ("ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest", "ClassifyRequest"):
                schemas[name]["properties"]["model"]["examples"] = models
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_limits(document: dict[str, Any], config: ServeConfig) -> dict[str, Any]:
    schemas = document["components"]["schemas"]
    chat, completion = schemas["ChatCompletionRequest"], schemas["CompletionRequest"]
    for body in (chat, completion):
        _set_maximum(body["properties"]["n"], config.max_n)
    _set_maximum(chat["properties"]["top_logprobs"], config.max_top_logprobs)
    _set_maximum(completion["properties"]["logprobs"], config.max_top_logprobs)
    for shape in completion["properties"]["prompt"]["anyOf"]:
        if shape.get("type") == "array" and shape["items"].get("type") != "integer":
            shape["maxItems"] = config.max_prompts_per_request
    for name in ("EmbeddingRequest", "ClassifyRequest"):
        for shape in schemas[name]["properties"]["input"]["anyOf"]:
            if shape.get("type") == "array":
                shape["maxItems"] = config.max_embedding_inputs
    completion["anyOf"] = _best_of_is_n(config.max_n)
    return document


def _set_maximum(schema: dict[str, Any], maximum: int) -> None:
    """Set ``maximum`` on the integer branch of an ``int | None`` field's schema."""
    for shape in schema.get("anyOf", [schema]):
        if shape.get("type") == "integer":
            shape["maximum"] = min(maximum, shape.get("maximum", maximum))


def _best_of_is_n(max_n: int) -> list[dict[str, Any]]:
    unset = {"not": {"required": ["best_of"]}}
    null = {"required": ["best_of"], "properties": {"best_of": {"type": "null"}}}
    one = {"properties": {"best_of": {"const": 1}, "n": {"enum": [1, None]}}}
    pairs = [
        {"required": ["best_of", "n"], "properties": {"best_of": {"const": k}, "n": {"const": k}}}
        for k in range(1, max_n + 1)
    ]
    return [unset, null, one, *pairs]
