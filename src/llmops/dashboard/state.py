"""What every dashboard page shares: the store, the key store, the session signer, the templates,
and (when the gateway serves the dashboard) the gateway's live view and key cache.

Templates are Jinja2 with autoescape on for every template: model output, prompts and names reach
the page as text, never as markup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

from llmops.dashboard.access import Viewer
from llmops.dashboard.session import SessionSigner
from llmops.security.keys import KeyStore
from llmops.security.roles import Role
from llmops.store.home import Home

PREFIX = "/ui"
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
HTMX = "htmx-2.0.11.min.js"

# (path under /ui, label, role needed): the navigation, shown by role.
NAVIGATION: tuple[tuple[str, str, Role], ...] = (
    ("/", "Overview", Role.CONSUMER),
    ("/models", "Models", Role.DEVELOPER),
    ("/runs", "Runs", Role.DEVELOPER),
    ("/evals", "Evaluations", Role.DEVELOPER),
    ("/deployments", "Deployments", Role.DEVELOPER),
    ("/monitoring", "Monitoring", Role.DEVELOPER),
    ("/requests", "Requests", Role.CONSUMER),
    ("/pipelines", "Pipelines", Role.DEVELOPER),
    ("/loop", "Loop", Role.DEVELOPER),
    ("/keys", "Keys", Role.ADMIN),
    ("/audit", "Audit", Role.ADMIN),
)

LiveDeployments = Callable[[], list[dict[str, Any]]]


def template_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _number
    env.filters["ts"] = lambda value: value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"
    return env


def _number(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1):
        return f"{int(value):,}"
    return f"{value:.{digits}g}"


@dataclass
class DashboardState:
    home: Home
    keys: KeyStore
    signer: SessionSigner
    secure_cookies: bool = False
    live_deployments: LiveDeployments | None = None
    on_key_change: Callable[[], None] | None = None
    env: Environment = field(default_factory=template_environment)

    def render(
        self, template: str, viewer: Viewer | None, *, status: int = 200, request: Request, **context: Any
    ) -> HTMLResponse:
        nav = [
            (
                PREFIX + path,
                label,
                request.url.path == PREFIX + path or (path == "/" and request.url.path == PREFIX),
            )
            for path, label, role in NAVIGATION
            if viewer is not None and viewer.may(role)
        ]
        html = self.env.get_template(template).render(
            prefix=PREFIX, htmx=f"{PREFIX}/static/{HTMX}", viewer=viewer, nav=nav, Role=Role, **context
        )
        return HTMLResponse(html, status_code=status)

    def error_page(self, viewer: Viewer | None, request: Request, status: int, message: str) -> HTMLResponse:
        return self.render(
            "error.html", viewer, status=status, request=request, status_code=status, message=message
        )
