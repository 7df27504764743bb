"""Keys (admin): every key with its role, state and spend against its budget; create a key (shown
once) and revoke one, through the same ``KeyStore`` calls and audit events as the admin API."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from llmops.dashboard.access import PageRule
from llmops.dashboard.queries.spend import spend_by_key
from llmops.dashboard.routing import PageRequest, PageRoute
from llmops.dashboard.state import PREFIX
from llmops.errors import InvalidInput
from llmops.security.keys import KeySpec, parse_expiry
from llmops.security.roles import ROLE_NAMES, Role, parse_role


def _page(page: PageRequest, *, created: object = None, status: int = 200) -> Response:
    records = page.ui.keys.list()
    return page.render(
        "keys.html", status=status, keys=records, spend=spend_by_key(page.ui.home.store), roles=ROLE_NAMES,
        created=created,
    )  # fmt: skip


def keys(page: PageRequest) -> Response:
    return _page(page)


def _budget(value: str) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(f"budget {value!r} is not a number of dollars", param="budget_usd") from None


def create(page: PageRequest) -> Response:
    form = page.form
    models = tuple(m.strip() for m in form.get("models", "").split(",") if m.strip())
    spec = KeySpec(
        name=form.get("name", "").strip(),
        role=parse_role(form.get("role", "consumer")),
        models=models,
        budget_usd=_budget(form.get("budget_usd", "").strip()),
        expires_at=parse_expiry(form.get("expires", "").strip() or None),
    )
    created = page.ui.keys.create(spec, form.get("reason") or "via the dashboard", actor=page.viewer.actor)
    return _page(page, created=created, status=201)


def revoke(page: PageRequest) -> Response:
    page.ui.keys.revoke(
        page.path("key_id"), page.form.get("reason") or "via the dashboard", actor=page.viewer.actor
    )
    if page.ui.on_key_change is not None:
        page.ui.on_key_change()
    return RedirectResponse(f"{PREFIX}/keys", status_code=303)


ROUTES = [
    PageRoute("/keys", keys, PageRule(Role.ADMIN)),
    PageRoute("/keys", create, PageRule(Role.ADMIN, changes_state=True), "POST"),
    PageRoute("/keys/{key_id}/revoke", revoke, PageRule(Role.ADMIN, changes_state=True), "POST"),
]
