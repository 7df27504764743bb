"""How a dashboard page is declared and served: the role it needs, the session, CSRF, errors.

A page is a plain function of a ``PageRequest`` returning a response; it runs in a worker thread
(store reads block). ``serve_page`` wraps it: no or a bad session sends the browser to the login
page; a role below the page's gets 403; a state-changing request without the session's CSRF token
gets 403 before the page runs; errors of the taxonomy become an error page with their status and
message, never a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from llmops.dashboard.access import PageRule, Viewer, session_key
from llmops.dashboard.session import CSRF_FIELD, SESSION_COOKIE
from llmops.dashboard.state import PREFIX, DashboardState
from llmops.errors import LLMOpsError

log = logging.getLogger(__name__)
MAX_FORM_BYTES = 64 * 1024


@dataclass
class PageRequest:
    """What a page sees: the request (path and query), the viewer, the posted form, the state."""

    request: Request
    viewer: Viewer
    ui: DashboardState
    form: dict[str, str] = field(default_factory=dict)

    def query(self, name: str) -> str | None:
        value = self.request.query_params.get(name)
        return value.strip() or None if value is not None else None

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return self.ui.render(template, self.viewer, status=status, request=self.request, **context)


PageHandler = Callable[[PageRequest], Response]


@dataclass(frozen=True)
class PageRoute:
    """One route of the dashboard: path (under /ui), the page, its rule, its method."""

    path: str
    handler: PageHandler
    rule: PageRule
    method: str = "GET"


async def read_form(request: Request) -> dict[str, str] | None:
    """The url-encoded body as single values; None when it is too large or not a form."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=100)
    return {name: values[-1] for name, values in parsed.items()}


def login_redirect(request: Request) -> Response:
    """Send the browser to the login page, coming back here afterwards (htmx: a full redirect)."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"{PREFIX}/login?next={quote(target, safe='')}"
    if request.headers.get("hx-request") == "true":
        return Response(status_code=200, headers={"HX-Redirect": location})
    response = RedirectResponse(location, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


async def current_viewer(request: Request, ui: DashboardState) -> Viewer | None:
    session = ui.signer.verify(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    record = await run_in_threadpool(session_key, ui.keys, session)
    if record is None:
        return None
    return Viewer(record, session, ui.signer.csrf_token(session))


def serve_page(route: PageRoute, ui: DashboardState) -> Callable[[Request], Awaitable[Response]]:
    role = route.rule.role
    assert role is not None, "public routes are served by their own endpoints"

    async def endpoint(request: Request) -> Response:
        viewer = await current_viewer(request, ui)
        if viewer is None:
            return login_redirect(request)
        form: dict[str, str] = {}
        if route.rule.changes_state:
            posted = await read_form(request)
            if posted is None or not ui.signer.csrf_valid(viewer.session, posted.get(CSRF_FIELD)):
                return ui.error_page(
                    viewer, request, 403, "this form has no valid CSRF token; reload the page"
                )
            form = posted
        if not viewer.may(role):
            message = f"this page needs the {role.label!r} role; your key is {viewer.role.label!r}"
            return ui.error_page(viewer, request, 403, message)
        page = PageRequest(request, viewer, ui, form)
        try:
            return await run_in_threadpool(route.handler, page)
        except LLMOpsError as error:
            return ui.error_page(viewer, request, error.status_code, error.message)

    return endpoint
