"""A whole answer that goes to the client before its request is recorded.

Relaxed logging only promises that a request's row is written soon after its answer; its metrics,
log row and monitor observation need not hold the answer back. ``RecordedResponse`` sends the
answer, then records the request (``finally``: also when the client went away meanwhile). The budget
and the limits are settled before it is built, so the request that follows sees them settled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response


class RecordedResponse(Response):
    """A ``Response`` that awaits ``record`` once it has been sent (or its sending failed)."""

    def __init__(
        self, body: bytes, status_code: int, media_type: str, record: Callable[[], Awaitable[None]]
    ) -> None:
        super().__init__(body, status_code, media_type=media_type)
        self._record = record

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._record()
