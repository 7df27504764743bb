"""Requests: the request log, filtered and paged on the server; one request with its timings,
version, cost, feedback and online-evaluation scores. A consumer sees its own requests only."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import Response

from llmops.dashboard.access import PageRule
from llmops.dashboard.queries.requests import FILTER_FIELDS, may_read_payloads, one_request, request_page
from llmops.dashboard.routing import PageRequest, PageRoute
from llmops.errors import InvalidInput
from llmops.security.roles import Role


def requests(page: PageRequest) -> Response:
    values = {name: value for name in FILTER_FIELDS if (value := page.query(name)) is not None}
    if "status" in values and not values["status"].isdigit():
        raise InvalidInput("status must be an HTTP status such as 200 or 502", param="status")
    found = request_page(page.ui.home, page.viewer, values, page.query("before"))
    query = urlencode(values)
    template = "_requests_table.html" if page.request.headers.get("hx-request") == "true" else "requests.html"
    return page.render(
        template, found=found, query=query, payloads=may_read_payloads(page.viewer),
        staff=page.viewer.may(Role.DEVELOPER),
    )  # fmt: skip


def request(page: PageRequest) -> Response:
    detail = one_request(page.ui.home, page.viewer, page.path("request_id"))
    return page.render("request.html", r=detail)


ROUTES = [
    PageRoute("/requests", requests, PageRule(Role.CONSUMER)),
    PageRoute("/requests/{request_id}", request, PageRule(Role.CONSUMER)),
]
