"""Deployments and rollouts: arms, split and replicas; each rollout's timeline with its analysis
numbers; promote and roll back for deployers (queued as the same lifecycle signal as ``llmops
rollout promote|rollback``, audited with the viewer's key)."""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import RedirectResponse, Response

from llmops.dashboard.access import PageRule
from llmops.dashboard.charts import Series, line_chart
from llmops.dashboard.queries.deployments import list_deployments
from llmops.dashboard.queries.rollouts import SIGNALS, recent_rollouts, rollout_view, signal_rollout
from llmops.dashboard.routing import PageRequest, PageRoute
from llmops.dashboard.state import PREFIX
from llmops.errors import InvalidInput
from llmops.security.roles import Role


def deployments(page: PageRequest) -> Response:
    store = page.ui.home.store
    return page.render(
        "deployments.html",
        deployments=list_deployments(store, page.ui.live_deployments),
        rollouts=recent_rollouts(store),
    )


def rollout(page: PageRequest) -> Response:
    view = rollout_view(page.ui.home.store, page.path("run_id"))
    labels = [e.transition.at.strftime("%H:%M:%S") for e in view.timeline]
    chart = line_chart(
        "candidate share of traffic (%)",
        labels,
        [Series(view.data.candidate.ref, [e.candidate_share for e in view.timeline])],
    )
    return page.render("rollout.html", view=view, chart=chart, signals=SIGNALS, done=page.query("done"))


def signal(page: PageRequest) -> Response:
    action = page.form.get("action", "")
    if action not in SIGNALS:
        raise InvalidInput(f"action {action!r} is not one of {', '.join(SIGNALS)}", param="action")
    reason = page.form.get("reason", "").strip()
    if not reason:
        raise InvalidInput("give a reason: it is recorded in the audit log", param="reason")
    record = signal_rollout(
        page.ui.home.store, page.path("run_id"), action, actor=page.viewer.actor, reason=reason
    )
    return RedirectResponse(f"{PREFIX}/rollouts/{quote(record.id)}?done={action}", status_code=303)


ROUTES = [
    PageRoute("/deployments", deployments, PageRule(Role.DEVELOPER)),
    PageRoute("/rollouts/{run_id}", rollout, PageRule(Role.DEVELOPER)),
    PageRoute("/rollouts/{run_id}/signal", signal, PageRule(Role.DEPLOYER, changes_state=True), "POST"),
]
