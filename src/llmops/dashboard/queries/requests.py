"""The request log for the dashboard: a filtered page of requests and one request in full, through
``monitor.request_search`` (the same filters and views as the admin API and ``llmops requests``).

A consumer's view is scoped to its own key: its filter is pinned to its key id, and one request of
another key reads as not found. Payloads (prompts, completions, feedback text) are shown only to
roles that may read them (``LLMOPS_PAYLOAD_READ_ROLE``, default deployer); others see a marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmops.dashboard.access import Viewer
from llmops.errors import NotFound
from llmops.monitor.model_refs import resolve_model_version
from llmops.monitor.request_search import (
    RequestDetail,
    RequestFilter,
    RequestView,
    get_request,
    parse_time,
    search_requests,
)
from llmops.security.payload_crypto import PayloadCipher, Reveal, revealer
from llmops.security.roles import parse_role
from llmops.settings import get_settings
from llmops.store.home import Home

PAGE_SIZE = 50
REDACTED = "[redacted: your role may not read payloads]"
FILTER_FIELDS = ("deployment", "version", "status", "user", "key_id", "text", "since", "until")


def may_read_payloads(viewer: Viewer) -> bool:
    return viewer.role.allows(parse_role(get_settings().payload_read_role))


def payload_reveal(viewer: Viewer) -> Reveal:
    """Decrypted payloads for roles allowed to read them; a marker (never the text) for others."""
    if may_read_payloads(viewer):
        return revealer(PayloadCipher.from_settings(get_settings()))
    return lambda value: None if value is None else REDACTED


@dataclass(frozen=True)
class RequestPage:
    rows: list[RequestView]
    before: str | None  # the request this page starts after (None: the newest)
    has_next: bool
    filters: dict[str, str]


def _filter(home: Home, viewer: Viewer, values: dict[str, str], before: str | None) -> RequestFilter:
    status = values.get("status")
    version = values.get("version")
    fields: dict[str, Any] = {
        "deployment": values.get("deployment"),
        "model_version": resolve_model_version(home.store, home.artifacts, version) if version else None,
        "status": int(status) if status and status.isdigit() else None,
        "user": values.get("user"),
        "key_id": viewer.tenant or values.get("key_id"),
        # a role that may not read payloads may not search them either (the search would reveal them)
        "text": values.get("text") if may_read_payloads(viewer) else None,
        "since": parse_time(values["since"], param="since") if values.get("since") else None,
        "until": parse_time(values["until"], param="until") if values.get("until") else None,
    }
    return RequestFilter(**fields, limit=PAGE_SIZE + 1, before_id=before)


def request_page(home: Home, viewer: Viewer, values: dict[str, str], before: str | None) -> RequestPage:
    """A page of ``PAGE_SIZE`` requests, newest first, older than ``before`` (a request id) if given."""
    found = search_requests(home.store, _filter(home, viewer, values, before), payload_reveal(viewer))
    return RequestPage(found[:PAGE_SIZE], before, len(found) > PAGE_SIZE, values)


def one_request(home: Home, viewer: Viewer, request_id: str) -> RequestDetail:
    detail = get_request(home.store, request_id, payload_reveal(viewer))
    if viewer.tenant is not None and detail.key_id != viewer.tenant:
        raise NotFound(f"no request {request_id!r} in the request log", param="request_id")
    return detail
