"""Pipelines and the maintenance loop: recent pipeline runs and loop cycles, each with the history
of its transitions (who, why, the numbers) from the lifecycle store."""

from __future__ import annotations

from starlette.responses import Response

from llmops.dashboard.access import PageRule
from llmops.dashboard.routing import PageHandler, PageRequest, PageRoute
from llmops.loop.states import CYCLE_MACHINE
from llmops.pipelines.lock import PIPELINE_MACHINE
from llmops.security.roles import Role
from llmops.store.lifecycle import Lifecycle, StateMachine

KINDS: dict[str, tuple[StateMachine, str]] = {
    "pipelines": (PIPELINE_MACHINE, "Pipeline runs"),
    "loop": (CYCLE_MACHINE, "Maintenance loop cycles"),
}


def _runs(kind: str) -> PageHandler:
    machine, title = KINDS[kind]

    def page_of_runs(page: PageRequest) -> Response:
        found = Lifecycle(page.ui.home.store, machine).recent(limit=100)
        return page.render("lifecycle.html", title=title, kind=kind, runs=found)

    return page_of_runs


def _run(kind: str) -> PageHandler:
    machine, title = KINDS[kind]

    def one_run(page: PageRequest) -> Response:
        runs = Lifecycle(page.ui.home.store, machine)
        record = runs.find(page.path("run_id"))
        return page.render(
            "lifecycle_run.html", title=title, kind=kind, run=record, history=runs.history(record.id)
        )

    return one_run


ROUTES = [
    PageRoute(f"/{kind}{suffix}", make(kind), PageRule(Role.DEVELOPER))
    for kind in KINDS
    for suffix, make in (("", _runs), ("/{run_id}", _run))
]
