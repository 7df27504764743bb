"""Evaluations: stored evaluation runs; one run's scores with intervals, gates, the comparison with
the champion (the model's ``production`` version on the same suite) and the per-example diff."""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.responses import Response

from llmops.dashboard.access import PageRule
from llmops.dashboard.charts import bar_chart
from llmops.dashboard.pages.runs import recent_runs
from llmops.dashboard.routing import PageRequest, PageRoute
from llmops.errors import InvalidInput, NotFound
from llmops.evals.results import Comparison, ExampleOutcome
from llmops.evals.runner import EXPERIMENT, EvalRun, EvalRunner
from llmops.evals.stats import compare_runs
from llmops.evals.storage import gates_from_json
from llmops.registry.cards import GATES_TAG
from llmops.security.roles import Role
from llmops.tracking.client import Tracker

CHAMPION_ALIAS = "production"
FILTERS = ("all", "changed", "better", "worse")
MAX_EXAMPLES = 200


@dataclass(frozen=True)
class ExampleDiff:
    example_id: str
    prompt: str
    prediction: str
    champion_prediction: str | None
    score: float | None
    champion_score: float | None

    @property
    def change(self) -> str:
        if self.score is None or self.champion_score is None or self.score == self.champion_score:
            return "same"
        return "better" if self.score > self.champion_score else "worse"


def _gates_passed(tags: dict[str, str]) -> bool | None:
    """Whether the run's stored gates passed (None when it stored none)."""
    if GATES_TAG not in tags:
        return None
    return gates_from_json(json.loads(tags[GATES_TAG])).passed


def evals(page: PageRequest) -> Response:
    found = recent_runs(Tracker.from_home(page.ui.home), EXPERIMENT)
    gates = {run.id: _gates_passed(run.tags) for run in found}
    return page.render("evals.html", runs=found, gates=gates)


def _champion(runner: EvalRunner, run: EvalRun) -> EvalRun | None:
    try:
        champion = runner.registry.get(f"{run.model.name}@{CHAMPION_ALIAS}")
    except NotFound:
        return None
    if champion.digest == run.model.digest:
        return None
    tags = {"suite_digest": run.suite_digest, "model_digest": champion.digest}
    stored = runner.tracker.find_runs(EXPERIMENT, tags)
    return runner.load(stored[0].id) if stored else None


def _diffs(run: EvalRun, champion: EvalRun | None, metric: str) -> list[ExampleDiff]:
    theirs: dict[str, ExampleOutcome] = (
        {o.example_id: o for o in champion.results.outcomes} if champion else {}
    )
    rows = []
    for outcome in run.results.outcomes:
        other = theirs.get(outcome.example_id)
        mine, their_score = outcome.scores.get(metric), other.scores.get(metric) if other else None
        rows.append(
            ExampleDiff(
                outcome.example_id, outcome.prompt, outcome.prediction, other.prediction if other else None,
                mine.value if mine else None, their_score.value if their_score else None,
            )
        )  # fmt: skip
    return rows


def evaluation(page: PageRequest) -> Response:
    runner = EvalRunner(page.ui.home)
    run = runner.load(page.path("run_id"))
    metric_ids = [m.info.metric_id for m in run.summary.metrics]
    metric = page.query("metric") or (metric_ids[0] if metric_ids else "")
    if metric and metric not in metric_ids:
        raise InvalidInput(f"metric {metric!r} is not one of {', '.join(metric_ids)}", param="metric")
    only = page.query("only") or "all"
    if only not in FILTERS:
        raise InvalidInput(f"only {only!r} is not one of {', '.join(FILTERS)}", param="only")
    champion = _champion(runner, run)
    comparison: Comparison | None = None
    if champion is not None:
        stats = run.suite.statistics
        comparison = compare_runs(
            run.results, champion.results, run.metrics,
            resamples=stats.resamples, confidence=stats.confidence, seed=stats.seed,
        )  # fmt: skip
    diffs = [
        d
        for d in _diffs(run, champion, metric)
        if only == "all" or d.change == only or (only == "changed" and d.change != "same")
    ]
    scores = [(m.info.metric_id, m.score) for m in run.summary.metrics if m.score is not None]
    chart = bar_chart("score per metric", scores, high=max([1.0, *(s for _, s in scores)]))
    return page.render(
        "evaluation.html", run=run, champion=champion, comparison=comparison, chart=chart,
        metric=metric, metric_ids=metric_ids, only=only, filters=FILTERS,
        diffs=diffs[:MAX_EXAMPLES], shown=min(len(diffs), MAX_EXAMPLES), matching=len(diffs),
    )  # fmt: skip


ROUTES = [
    PageRoute("/evals", evals, PageRule(Role.DEVELOPER)),
    PageRoute("/evals/{run_id}", evaluation, PageRule(Role.DEVELOPER)),
]
