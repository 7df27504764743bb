"""The dashboard's ASGI app, served under ``/ui`` by the gateway (``mount_dashboard``) or on its own
over a store (``create_dashboard``, ``llmops ui``).

Public routes: the login form and the static files (htmx, pinned and vendored with its licence, and
the style sheet). Every other route is a page from ``pages/`` that declares the role it needs; the
app refuses to build if one does not.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from llmops.dashboard.headers import SecurityHeaders
from llmops.dashboard.pages import (
    audit,
    deployments,
    evals,
    keys,
    lifecycle,
    models,
    monitoring,
    overview,
    requests,
    runs,
)
from llmops.dashboard.routing import PageRoute, current_viewer, read_form, serve_page
from llmops.dashboard.session import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SessionSigner,
    login_token_valid,
    new_login_token,
)
from llmops.dashboard.state import PREFIX, STATIC, DashboardState, LiveDeployments
from llmops.security.keys import KeyStore
from llmops.store.home import Home

PAGE_MODULES = (overview, models, runs, evals, deployments, monitoring, requests, keys, audit, lifecycle)
DEFAULT_SESSION_TTL_S = 30 * 60


def page_routes() -> list[PageRoute]:
    routes = [route for module in PAGE_MODULES for route in module.ROUTES]
    unguarded = [route.path for route in routes if route.rule.role is None]
    if unguarded:
        raise RuntimeError(f"dashboard pages without a role: {unguarded}")
    return routes


def _next_target(value: str | None) -> str:
    """Where to go after logging in: a dashboard path only (never another site)."""
    target = unquote(value or "")
    if target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX + "/"


def _login_routes(ui: DashboardState) -> list[Route]:
    def login_form(request: Request, *, status: int = 200, message: str | None = None) -> Response:
        token = new_login_token()
        response = ui.render(
            "login.html",
            None,
            status=status,
            request=request,
            token=token,
            next=_next_target(request.query_params.get("next")),
            message=message,
        )
        response.set_cookie(
            LOGIN_COOKIE, token, max_age=600, path=PREFIX, httponly=True, samesite="strict",
            secure=ui.secure_cookies,
        )  # fmt: skip
        return response

    async def login_page(request: Request) -> Response:
        if await current_viewer(request, ui) is not None:
            return RedirectResponse(_next_target(request.query_params.get("next")), status_code=303)
        return login_form(request)

    async def login(request: Request) -> Response:
        form = await read_form(request)
        if form is None or not login_token_valid(request.cookies.get(LOGIN_COOKIE), form.get(CSRF_FIELD)):
            return login_form(request, status=403, message="the login form expired; try again")
        record = await run_in_threadpool(ui.keys.lookup, form.get("key", "").strip())
        if record is None or record.state() != "active":
            return login_form(request, status=401, message="that key is not a valid, active API key")
        cookie, _ = ui.signer.issue(record.id)
        response = RedirectResponse(_next_target(form.get("next")), status_code=303)
        response.set_cookie(
            SESSION_COOKIE, cookie, max_age=int(ui.signer.ttl_s), path=PREFIX, httponly=True,
            samesite="strict", secure=ui.secure_cookies,
        )  # fmt: skip
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
        return response

    async def logout(request: Request) -> Response:
        viewer = await current_viewer(request, ui)
        form = await read_form(request)
        if viewer is not None and (
            form is None or not ui.signer.csrf_valid(viewer.session, form.get(CSRF_FIELD))
        ):
            return ui.error_page(viewer, request, 403, "this form has no valid CSRF token; reload the page")
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    return [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]


def build_dashboard(ui: DashboardState) -> Starlette:
    """The dashboard app over ``ui``; mount it at ``/ui``."""
    routes: list[Any] = _login_routes(ui)
    routes += [Route(route.path, serve_page(route, ui), methods=[route.method]) for route in page_routes()]
    routes.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))

    async def not_found(request: Request, exc: Exception) -> Response:
        viewer = await current_viewer(request, ui)
        return ui.error_page(viewer, request, 404, f"no page {request.url.path}")

    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.state.dashboard = ui
    return app


def dashboard_state(
    home: Home,
    *,
    live_deployments: LiveDeployments | None = None,
    on_key_change: Any = None,
    session_ttl_s: float = DEFAULT_SESSION_TTL_S,
    secure_cookies: bool = False,
) -> DashboardState:
    secret = home.settings.secret_value()
    return DashboardState(
        home=home,
        keys=KeyStore.from_home(home),
        signer=SessionSigner(secret, ttl_s=session_ttl_s),
        secure_cookies=secure_cookies,
        live_deployments=live_deployments,
        on_key_change=on_key_change,
    )


def create_dashboard(home: Home, **options: Any) -> Starlette:
    """The dashboard on its own (``llmops ui``): ``/ui/...``, and ``/`` sends the browser there."""
    inner = SecurityHeaders(build_dashboard(dashboard_state(home, **options)))

    async def to_dashboard(request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    return Starlette(routes=[Route("/", to_dashboard), Mount(PREFIX, app=inner)])


def mount_dashboard(app: Any, home: Home | None = None, **options: Any) -> None:
    """Serve the dashboard under ``/ui`` of a gateway app (``gateway.app.build_app``'s), showing its
    live replicas and forgetting its cached keys when a key is revoked from the dashboard."""
    from llmops.gateway.admin import deployment_view

    gateway = app.state.gateway
    state = dashboard_state(
        home or gateway.home,
        live_deployments=lambda: [deployment_view(d) for d in gateway.table.all()],
        on_key_change=gateway.key_cache.forget_all,
        **options,
    )
    app.mount(PREFIX, SecurityHeaders(build_dashboard(state)))
