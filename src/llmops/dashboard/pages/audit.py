"""Audit (admin): every recorded change newest first, filtered by action or target, and whether the
hash chain verifies end to end."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import Response

from llmops.dashboard.access import PageRule
from llmops.dashboard.queries.audit_log import audit_page, chain_status
from llmops.dashboard.routing import PageRequest, PageRoute
from llmops.errors import InvalidInput
from llmops.security.roles import Role


def audit(page: PageRequest) -> Response:
    action, target = page.query("action"), page.query("target")
    number = page.query("page") or "1"
    if not number.isdigit() or int(number) < 1:
        raise InvalidInput("page must be a whole number from 1", param="page")
    store = page.ui.home.store
    events, has_next = audit_page(store, action=action, target=target, page=int(number))
    filters = {k: v for k, v in (("action", action), ("target", target)) if v}
    return page.render(
        "audit.html", events=events, has_next=has_next, page_number=int(number), chain=chain_status(store),
        filters=filters, query=urlencode(filters),
    )  # fmt: skip


ROUTES = [PageRoute("/audit", audit, PageRule(Role.ADMIN))]
