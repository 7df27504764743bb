"""The gateway's OpenAPI document: the errors every route can give, the bearer scheme, and the request
bodies of the OpenAI routes as the replicas behind it validate them, with the gateway's own rules.

The OpenAI routes read their bodies raw (``openai_request.parse_request``) and forward them; the
replica validates the rest. So their request schemas are the replica's (``serve.protocol``, with the
limits of ``llmops serve``'s defaults) plus what the gateway refuses itself: a field named like a URL
anywhere in the body, a URL as the value of a top-level field, and ``stream`` on embeddings and
classify.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from llmops.gateway.openai_request import URL_FIELDS
from llmops.gateway.openapi_links import add_links
from llmops.gateway.policy import route_policy
from llmops.gateway.upstream_urls import UPSTREAM_URL_PATTERN
from llmops.openapi_contract import attach_error_responses, case_insensitive, finish_document
from llmops.serve.config import ServeConfig
from llmops.serve.openapi_doc import with_limits
from llmops.serve.protocol import (
    URL_FIELD_NAMES_PATTERN,
    ChatCompletionRequest,
    ClassifyRequest,
    CompletionRequest,
    EmbeddingRequest,
)

REF = "#/components/schemas/{model}"
BEARER = {"bearer": {"type": "http", "scheme": "bearer", "description": "An llmops API key."}}
# the middleware: headers or body over the limits, the last-resort 500
MIDDLEWARE_ERRORS = (413, 431, 500)
# a key's route: a bad query or body, no or a bad key, a role too low, the key store unreachable
KEYED_ERRORS = (400, 401, 403, 503)
# what the OpenAI routes add: unknown deployment, limits and budgets, replicas failing or slow
OPENAI_ERRORS = (404, 429, 502, 503, 504)
# routes without a path parameter that can still answer 404: an unknown model version or request,
# monitoring switched off
NOT_FOUND_PREFIXES = ("/api/requests", "/api/monitor", "/v1/feedback")
OPENAI_BODIES = {
    "/v1/chat/completions": "ChatCompletionRequest",
    "/v1/completions": "CompletionRequest",
    "/v1/embeddings": "EmbeddingRequest",
    "/v1/classify": "ClassifyRequest",
}
# openai_request: a field named like a URL anywhere, a URL as a top-level value
NESTED_URL_NAMES = (
    "^(?:" + "|".join(case_insensitive(name) for name in sorted(URL_FIELDS)) + ")$"
    f"|{case_insensitive('url')}$|{case_insensitive('_uri')}$"
)
URL_VALUE = {"type": "string", "pattern": r"^\s*[a-zA-Z][a-zA-Z0-9+.\-]*://"}
FALSY = {
    "anyOf": [
        {"type": "null"},
        {"enum": [False, 0, ""]},
        {"type": "array", "maxItems": 0},
        {"type": "object", "maxProperties": 0},
    ],
    "description": "Embeddings and classifications are not streamed: leave it unset or false.",
}


def openai_body(name: str) -> dict[str, Any]:
    """``openapi_extra`` for an OpenAI route: its JSON body is the component ``name``."""
    schema = {"$ref": REF.format(model=name)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def install_document(app: FastAPI, deployments: list[str]) -> None:
    """Attach the shared errors to every route and make ``app.openapi()`` the finished document."""
    keyed: set[tuple[str, str]] = set()
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        statuses: tuple[int, ...] = MIDDLEWARE_ERRORS
        if route_policy(route) != "public":
            statuses += KEYED_ERRORS
            keyed |= {(method.lower(), route.path) for method in route.methods or ()}
        if route.path in OPENAI_BODIES:
            statuses += OPENAI_ERRORS
        elif "{" in route.path or route.path.startswith(NOT_FOUND_PREFIXES):
            statuses += (404,)
        attach_error_responses(route, statuses)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = finish_document(generate())
            _add_request_schemas(document, deployments)
            _add_deployment_rules(document["components"]["schemas"])
            document["components"]["securitySchemes"] = BEARER
            add_links(document)
            for path, item in document["paths"].items():
                for method, operation in item.items():
                    if (method, path) in keyed:
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_request_schemas(document: dict[str, Any], deployments: list[str]) -> None:
    schemas = document["components"]["schemas"]
    for model in (ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ClassifyRequest):
        schema = model.model_json_schema(ref_template=REF)
        for name, definition in schema.pop("$defs", {}).items():
            schemas[name] = _nested_rules(definition)
        schemas[model.__name__] = _top_level_rules(schema, deployments)
    with_limits(document, ServeConfig())
    for name in ("EmbeddingRequest", "ClassifyRequest"):
        schemas[name]["properties"]["stream"] = FALSY


# what DeploymentConfig._one_arm_at_least enforces: arms, or the one-arm shorthand, not both; some
# arm with traffic
_NOT_BOTH = {
    "not": {
        "required": ["arms"],
        "properties": {"arms": {"minItems": 1}},
        "anyOf": [
            {"required": ["model"], "properties": {"model": {"type": "string", "minLength": 1}}},
            {"required": ["upstreams"], "properties": {"upstreams": {"minItems": 1}}},
        ],
    }
}
_SOME_ARM_WEIGHTED = {
    "if": {"required": ["arms"], "properties": {"arms": {"minItems": 1}}},
    "then": {
        "properties": {
            "arms": {
                "contains": {
                    "anyOf": [
                        {"not": {"required": ["weight"]}},
                        {"properties": {"weight": {"exclusiveMinimum": 0}}},
                    ]
                }
            }
        }
    },
}


def _add_deployment_rules(schemas: dict[str, Any]) -> None:
    """Rules of the deployment config the admin API takes that pydantic's schema does not state."""
    schemas["DeploymentConfig"].update(_NOT_BOTH, allOf=[_SOME_ARM_WEIGHTED])
    schemas["UpstreamConfig"]["properties"]["url"]["pattern"] = UPSTREAM_URL_PATTERN


def _nested_rules(schema: dict[str, Any]) -> dict[str, Any]:
    if schema.get("type") == "object":
        schema["propertyNames"] = {"not": {"pattern": NESTED_URL_NAMES}}
    return schema


def _top_level_rules(schema: dict[str, Any], deployments: list[str]) -> dict[str, Any]:
    names = f"{URL_FIELD_NAMES_PATTERN}|{NESTED_URL_NAMES}"
    schema["propertyNames"] = {"not": {"pattern": names}}
    for name, field in schema["properties"].items():
        if name != "model":
            field.setdefault("not", URL_VALUE)
    schema["properties"]["model"].update(examples=deployments, **{"not": URL_VALUE})
    schema["additionalProperties"] = {"not": URL_VALUE}
    return schema
