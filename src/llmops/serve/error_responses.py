"""Map every error to an OpenAI-shaped JSON answer, once, for the whole app.

``LLMOpsError`` keeps its status, body and headers (``Retry-After`` for 429/503). Request validation
errors become 400 (never FastAPI's 422) with ``param`` naming the field in OpenAI's style
(``messages[0].role``). Bodies that are not JSON, or not UTF-8, are 400 too. Unknown routes and
methods keep their 404/405 but in OpenAI's shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from llmops.errors import InvalidInput, LLMOpsError, NotFound
from llmops.security.json_route import parse_error_of


def error_response(error: LLMOpsError) -> JSONResponse:
    return JSONResponse(error.to_body(), status_code=error.status_code, headers=error.headers())


_NOT_AN_OBJECT = frozenset({"missing", "model_attributes_type", "model_type", "dict_type"})
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "tuple", "none", "bytes"})


def _param(loc: tuple[Any, ...]) -> str | None:
    """``("body", "messages", 0, "role")`` → ``"messages[0].role"``; union members' tags are dropped."""
    text = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, str) and ("[" in part or part in _TYPE_TAGS):
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or None


def validation_error(errors: Sequence[Mapping[str, Any]]) -> InvalidInput:
    """The first problem as an InvalidInput naming its field (and how many more there are)."""
    first = errors[0]
    ctx = first.get("ctx") or {}
    if first.get("type") == "json_invalid":
        where = first["loc"][1] if len(first["loc"]) > 1 else "?"
        return InvalidInput(f"request body is not valid JSON: {ctx.get('error', 'decode error')} at {where}")
    loc = tuple(first.get("loc", ()))
    if loc == ("body",) and first.get("type") in _NOT_AN_OBJECT:
        what = "missing" if first.get("type") == "missing" else "not a JSON object"
        return InvalidInput(
            f"the request body is {what}: send a JSON object with Content-Type: application/json"
        )
    param = ctx.get("param") if isinstance(ctx.get("param"), str) else _param(loc)
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "missing":
        message = "field required"
    text = f"{param}: {message}" if param and not message.startswith(param) else message
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return InvalidInput(text, param=param, code="invalid_value")


async def _on_llmops_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LLMOpsError)
    return error_response(exc)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if not errors:
        return error_response(InvalidInput("invalid request body"))
    return error_response(validation_error(errors))


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    refused = parse_error_of(exc)
    if refused is not None:
        return error_response(refused)
    if isinstance(exc.__cause__, UnicodeDecodeError):
        return error_response(InvalidInput("request body is not valid UTF-8 JSON", code="invalid_encoding"))
    if exc.status_code == 404:
        return error_response(NotFound(f"no route {request.method} {request.url.path}"))
    error = LLMOpsError(str(exc.detail))
    error.status_code = exc.status_code
    error.error_type = "invalid_request_error" if exc.status_code < 500 else "internal_error"
    response = error_response(error)
    response.headers.update(exc.headers or {})
    return response


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LLMOpsError, _on_llmops_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
