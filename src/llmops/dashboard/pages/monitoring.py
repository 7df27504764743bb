"""Monitoring: online-evaluation scores and feedback per version over a window, and the latest
drift checks with each feature's score, threshold and p-value."""

from __future__ import annotations

from starlette.responses import Response

from llmops.dashboard.access import PageRule
from llmops.dashboard.charts import bar_chart
from llmops.dashboard.queries.feedback import feedback_by_version
from llmops.dashboard.queries.traffic import WINDOWS, window_of
from llmops.dashboard.routing import PageRequest, PageRoute
from llmops.monitor.drift_store import list_reports
from llmops.monitor.online_eval_store import online_eval_summary
from llmops.security.roles import Role
from llmops.store.schema import utcnow


def monitoring(page: PageRequest) -> Response:
    window = window_of(page.query("window"))
    store, since = page.ui.home.store, utcnow() - WINDOWS[window]
    online = online_eval_summary(store, since=since)
    feedback = feedback_by_version(store, since)
    chart = bar_chart(
        "mean online-evaluation score by version and metric",
        [(f"{s.model_version} {s.metric}", s.mean) for s in online if s.mean is not None],
        high=1.0,
    )
    return page.render(
        "monitoring.html",
        window=window,
        windows=list(WINDOWS),
        online=online,
        feedback=feedback,
        drift=list_reports(store, limit=20),
        chart=chart,
    )


ROUTES = [PageRoute("/monitoring", monitoring, PageRule(Role.DEVELOPER))]
