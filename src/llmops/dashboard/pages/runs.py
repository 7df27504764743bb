"""Runs: tracked runs (training, evaluation, pipelines) with their params, metric curves and artifacts."""

from __future__ import annotations

from starlette.responses import Response

from llmops.dashboard.access import PageRule
from llmops.dashboard.charts import Series, line_chart
from llmops.dashboard.routing import PageRequest, PageRoute
from llmops.security.roles import Role
from llmops.tracking.client import RunInfo, Tracker

MAX_RUNS = 100


def recent_runs(tracker: Tracker, experiment: str | None) -> list[RunInfo]:
    """The latest ``MAX_RUNS`` runs, each with its params, tags and latest metrics."""
    return [tracker.get_run(run.id) for run in tracker.list_runs(experiment, limit=MAX_RUNS)]


def runs(page: PageRequest) -> Response:
    experiment = page.query("experiment")
    found = recent_runs(Tracker.from_home(page.ui.home), experiment)
    return page.render("runs.html", runs=found, experiment=experiment or "")


def run(page: PageRequest) -> Response:
    tracker = Tracker.from_home(page.ui.home)
    info = tracker.get_run(page.path("run_id"))
    curves = []
    for key in sorted(info.latest_metrics):
        points = tracker.metric_history(info.id, key)
        if len(points) > 1:
            labels = [str(p.step) for p in points]
            curves.append(
                (key, line_chart(f"{key} by step", labels, [Series(key, [p.value for p in points])]))
            )
    return page.render("run.html", run=info, curves=curves)


ROUTES = [
    PageRoute("/runs", runs, PageRule(Role.DEVELOPER)),
    PageRoute("/runs/{run_id}", run, PageRule(Role.DEVELOPER)),
]
