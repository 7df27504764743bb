"""The request log in the admin API (developer role): search, one request in full, export.

``GET /api/requests`` filters like ``llmops requests search`` (deployment, version, time span,
status, user, key, text) and joins each row's feedback; ``GET /api/requests/{id}`` returns the whole
record with timings, feedback and online-evaluation scores; ``GET /api/requests/export`` streams
JSON Lines or returns a Parquet file. Every read runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask

from llmops.gateway.auth import Principal
from llmops.gateway.policy import RequireRole
from llmops.gateway.service import Gateway
from llmops.monitor.model_refs import resolve_model_version
from llmops.monitor.request_export import export_requests, jsonl_lines
from llmops.monitor.request_search import (
    RequestFilter,
    get_request,
    iter_requests,
    parse_time,
    search_requests,
)
from llmops.registry.references import MODEL_REF_PATTERN
from llmops.security.payload_crypto import PayloadCipher, Reveal, hide, revealer
from llmops.security.roles import Role, parse_role
from llmops.settings import get_settings
from llmops.store.home import Home

DEVELOPER = Depends(RequireRole(Role.DEVELOPER))


# what parse_time reads: a span ago, or an ISO 8601 date or time (days up to 28 and years from 1000
# in the schema, so a time it allows is a date in every month and converts to UTC)
_DATE = r"[12][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?"
TIME_PATTERN = rf"^([0-9]{{1,4}}(\.[0-9]{{1,3}})?[smhdw]|{_DATE}([T ]{_TIME})?)$"


class _Filters:
    """The search filters as query parameters (a FastAPI dependency)."""

    def __init__(
        self,
        deployment: str | None = Query(None, description="Deployment the request named."),
        version: str | None = Query(
            None, pattern=MODEL_REF_PATTERN, description="Model that answered: name@N, name@alias or name."
        ),
        since: str | None = Query(
            None, pattern=TIME_PATTERN, description="ISO time or a span ago (30m, 2h, 7d)."
        ),
        until: str | None = Query(None, pattern=TIME_PATTERN, description="ISO time or a span ago."),
        status: int | None = Query(None, ge=100, le=599, description="HTTP status of the answer."),
        user: str | None = Query(None, description="The request's `user` field."),
        key_id: str | None = Query(None, description="Id of the key that sent it."),
        text: str | None = Query(None, min_length=1, description="Text in the prompt or the completion."),
    ) -> None:
        self.values: dict[str, Any] = {
            "deployment": deployment,
            "model_version": version,
            "since": parse_time(since, param="since") if since else None,
            "until": parse_time(until, param="until") if until else None,
            "status": status,
            "user": user,
            "key_id": key_id,
            "text": text,
        }

    def filter(self, home: Home, limit: int | None) -> RequestFilter:
        """The filter, with ``version`` resolved like the registry does (alias, number or latest)."""
        values = dict(self.values)
        if values["model_version"]:
            values["model_version"] = resolve_model_version(
                home.store, home.artifacts, values["model_version"]
            )
        return RequestFilter(**values, limit=limit)


FILTERS = Depends(_Filters)


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def payload_reveal(principal: Principal) -> Reveal:
    """How ``principal`` sees stored prompts and completions: decrypted when its role reaches
    ``LLMOPS_PAYLOAD_READ_ROLE`` (default deployer), else ``[encrypted]`` for encrypted ones."""
    settings = get_settings()
    if principal.key.role.allows(parse_role(settings.payload_read_role)):
        return revealer(PayloadCipher.from_settings(settings))
    return hide


def _search_route(router: APIRouter) -> None:
    @router.get(
        "/api/requests",
        tags=["admin"],
        summary="Search the request log, newest first; each row with its feedback.",
    )
    async def search(
        request: Request,
        filters: _Filters = FILTERS,
        limit: int = Query(100, ge=1, le=1000),
        principal: Principal = DEVELOPER,
    ) -> list[dict[str, Any]]:
        home = _gateway(request).home
        request_filter = await asyncio.to_thread(filters.filter, home, limit)
        views = await asyncio.to_thread(
            search_requests, home.store, request_filter, payload_reveal(principal)
        )
        return [view.model_dump(mode="json") for view in views]


def _export_route(router: APIRouter) -> None:
    @router.get(
        "/api/requests/export",
        tags=["admin"],
        summary="Every matching request as JSON Lines (streamed) or a Parquet file.",
        response_model=None,
        responses={
            200: {
                "description": "JSON Lines, one request a line (`format=jsonl`), or a Parquet file.",
                "content": {
                    "application/x-ndjson": {"schema": {"type": "string"}},
                    "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    )
    async def export(
        request: Request,
        filters: _Filters = FILTERS,
        export_format: Literal["jsonl", "parquet"] = Query(
            "jsonl", alias="format", description="jsonl or parquet."
        ),
        principal: Principal = DEVELOPER,
    ) -> StreamingResponse | FileResponse:
        home = _gateway(request).home
        store, request_filter = home.store, await asyncio.to_thread(filters.filter, home, None)
        if export_format == "jsonl":
            lines = jsonl_lines(iter_requests(store, request_filter, reveal=payload_reveal(principal)))
            return StreamingResponse(lines, media_type="application/x-ndjson")
        folder = Path(tempfile.mkdtemp(prefix="llmops-export-"))
        path = folder / "requests.parquet"
        try:
            await asyncio.to_thread(
                export_requests, store, request_filter, path, "parquet", payload_reveal(principal)
            )
        except BaseException:
            _remove(folder)
            raise
        return FileResponse(
            path,
            media_type="application/vnd.apache.parquet",
            filename="requests.parquet",
            background=BackgroundTask(_remove, folder),
        )


def _show_route(router: APIRouter) -> None:
    @router.get(
        "/api/requests/{request_id}",
        tags=["admin"],
        summary="One request in full: timings, feedback and online-evaluation scores.",
    )
    async def show(request_id: str, request: Request, principal: Principal = DEVELOPER) -> dict[str, Any]:
        detail = await asyncio.to_thread(
            get_request, _gateway(request).home.store, request_id, payload_reveal(principal)
        )
        return detail.model_dump(mode="json")


def install_request_routes(router: APIRouter) -> None:
    """Add the request-log routes (the export route comes before ``/api/requests/{request_id}``)."""
    _search_route(router)
    _export_route(router)
    _show_route(router)


def _remove(folder: Path) -> None:
    for item in folder.iterdir():
        item.unlink(missing_ok=True)
    folder.rmdir()
