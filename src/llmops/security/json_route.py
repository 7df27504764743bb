"""``StrictJsonRoute``: FastAPI routes whose JSON bodies go through ``json_input.loads_json``.

FastAPI parses a body model's JSON with ``json.loads`` and turns anything but a decode error
(a ``RecursionError`` from deep nesting, a ``ValueError`` from a huge integer) into a bare
"There was an error parsing the body". Apps set ``app.router.route_class = StrictJsonRoute``
before adding routes; the ``InvalidInput`` raised while parsing is then the ``__cause__`` of
FastAPI's 400, and the apps' error handlers answer with it (``parse_error_of``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from llmops.errors import InvalidInput
from llmops.security.json_input import loads_json


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_json(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_handler


def parse_error_of(exc: BaseException) -> InvalidInput | None:
    """The strict parser's refusal behind FastAPI's generic 400, if that is what it was."""
    cause = exc.__cause__
    return cause if isinstance(cause, InvalidInput) else None
