"""Overview: deployments, the versions serving, traffic, errors, p95 latency and TTFT, spend, alerts.

A consumer sees the same page over its own requests only, without deployments or alerts.
"""

from __future__ import annotations

from starlette.responses import Response

from llmops.dashboard.access import PageRule
from llmops.dashboard.charts import Series, line_chart
from llmops.dashboard.queries.deployments import list_deployments
from llmops.dashboard.queries.traffic import WINDOWS, traffic_summary, window_of
from llmops.dashboard.routing import PageRequest, PageRoute
from llmops.monitor.alert_store import firing_alerts
from llmops.security.roles import Role


def overview(page: PageRequest) -> Response:
    window = window_of(page.query("window"))
    viewer, store = page.viewer, page.ui.home.store
    traffic = traffic_summary(store, window, key_id=viewer.tenant)
    staff = viewer.may(Role.DEVELOPER)
    charts = [
        line_chart(
            "requests per bucket by version",
            traffic.buckets,
            [Series(name, values) for name, values in traffic.requests_by_version.items()],
        ),
        line_chart(
            "mean latency (ms) by version",
            traffic.buckets,
            [Series(name, values) for name, values in traffic.latency_by_version.items()],
        ),
        line_chart("error rate", traffic.buckets, [Series("errors / requests", traffic.errors_by_bucket)]),
    ]
    return page.render(
        "overview.html",
        traffic=traffic,
        windows=list(WINDOWS),
        charts=zip(("Requests", "Latency", "Errors"), charts, strict=True),
        deployments=list_deployments(store, page.ui.live_deployments) if staff else [],
        alerts=firing_alerts(store, limit=50) if staff else [],
        staff=staff,
    )


ROUTES = [PageRoute("/", overview, PageRule(Role.CONSUMER))]
