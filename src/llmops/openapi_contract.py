"""What the OpenAPI documents of the replica and the gateway state beyond FastAPI's defaults.

Both apps answer every error in OpenAI's shape (``ErrorResponse``) and never with FastAPI's 422
(validation problems are 400s naming the field), so:

* ``error_responses(*statuses)`` is the ``responses=`` entry of a route for the errors it can give;
  ``attach_error_responses(route, statuses)`` adds them to a route already built (the apps attach
  the errors every route shares in one place);
* ``finish_document(document)`` removes FastAPI's 422 and its validation-error schemas;
* ``event_stream_response(model)`` documents a 200 that is JSON, or server-sent events with
  ``stream: true``;
* ``integral(value)`` reads ``5.0`` as ``5`` for integer fields (JSON Schema counts 5.0 as an integer);
* ``case_insensitive(word)`` writes a word as an ECMA-262 pattern matching any letter case (JSON
  Schema patterns have no flags).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape; every 4xx and 5xx of a replica and of the gateway has it."""

    error: ErrorDetail


ERROR_SCHEMA_REF = "#/components/schemas/ErrorResponse"
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The request is malformed or asks for something not supported; the message names the field.",
    401: "No API key, or an unknown, revoked or expired one.",
    403: "The key may not do this (its role or its list of deployments).",
    404: "No such route, model, deployment or record; the message says which.",
    405: "The route does not take this method; `Allow` lists the ones it takes.",
    409: "The change conflicts with the current state; the message says how to proceed.",
    413: "The request body is larger than the configured limit.",
    429: "Over a rate limit or budget; `Retry-After` says when to retry.",
    431: "The request headers are larger than the configured limit.",
    500: "An unexpected error; the request id is in `x-request-id`.",
    502: "The replica failed or answered something that is not a valid response.",
    503: "Overloaded, or no replica or store available now; `Retry-After` says when to retry.",
    504: "The replica did not answer in time.",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying (when known).",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_ALLOW = {
    "Allow": {"description": "The methods the route takes.", "schema": {"type": "string"}, "required": True}
}


def error_response(status: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[status]}
    if status in (429, 503):
        entry["headers"] = _RETRY_AFTER
    if status == 405:
        entry["headers"] = _ALLOW
    return entry


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for these error statuses, each with the shared error schema."""
    return {status: error_response(status) for status in statuses}


def attach_error_responses(route: APIRoute, statuses: Iterable[int]) -> None:
    """Document ``statuses`` on a built route; entries the route declares itself are kept.

    FastAPI reads ``model`` entries when it builds a route, so these name the schema by reference
    (``finish_document`` adds it to the components).
    """
    for status in statuses:
        if status not in route.responses and str(status) not in route.responses:
            entry = error_response(status)
            del entry["model"]
            entry["content"] = {"application/json": {"schema": {"$ref": ERROR_SCHEMA_REF}}}
            route.responses[status] = entry


# OpenAPI 3.1: the schema of an event stream describes each event
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": 'One server-sent event: a chunk as JSON in `data` (an error as `{"error": ...}`), '
    "and `data: [DONE]` last.",
    "required": ["data"],
    "properties": {
        "data": {"type": "string", "contentMediaType": "application/json"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}


def event_stream_response(model: type[BaseModel], description: str) -> dict[int | str, dict[str, Any]]:
    """A 200 that is ``model`` as JSON, or with ``stream: true`` a ``text/event-stream`` of its chunks."""
    return {
        200: {
            "model": model,
            "description": description,
            "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
        }
    }


def integral(value: Any) -> Any:
    """``5.0`` → ``5``: JSON has one number type, and JSON Schema counts 5.0 as an integer. A
    ``mode="before"`` validator of strict integer fields, which still refuse ``"5"`` and ``true``."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def case_insensitive(word: str) -> str:
    """``url`` → ``[uU][rR][lL]``: an ECMA-262 pattern for ``word`` in any letter case."""
    if not all(c.isalnum() or c == "_" for c in word):
        raise ValueError(f"only letters, digits and '_' are supported: {word!r}")
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


def finish_document(document: dict[str, Any]) -> dict[str, Any]:
    """Drop FastAPI's 422 answers (these apps answer 400) and the schemas only they used; add the
    error schema that ``attach_error_responses`` refers to."""
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas.setdefault("ErrorResponse", error_schema)
    return document
