"""Online-evaluation results in the store: scores per model version and metric, over every worker.

Serving processes write one ``online_eval_results`` row per metric and sampled response (through
the monitor's background writer). ``online_eval_summary`` aggregates them in the database: how many
responses were scored, their mean (0..1) and how many could not be scored. Blocking: on an event
loop call it in a thread.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from llmops.monitor.request_search import as_utc
from llmops.store.database import Store
from llmops.store.schema import OnlineEvalResult


class OnlineScoreSummary(BaseModel):
    """Stored online-evaluation results of one metric for one model version."""

    model_version: str = Field(description="The model version that answered.")
    metric: str = Field(description="The metric's id.")
    count: int = Field(description="Responses scored.")
    mean: float | None = Field(description="Mean score (0..1); None when none was scored.")
    errors: int = Field(description="Responses that could not be scored.")


def online_eval_summary(
    store: Store, *, model_version: str | None = None, since: datetime | None = None
) -> list[OnlineScoreSummary]:
    """Count, mean and errors per (model version, metric), sorted."""
    scored = func.count(OnlineEvalResult.value)
    query = (
        select(
            OnlineEvalResult.model_version,
            OnlineEvalResult.metric,
            scored,
            func.avg(OnlineEvalResult.value),
            func.count() - scored,
        )
        .group_by(OnlineEvalResult.model_version, OnlineEvalResult.metric)
        .order_by(OnlineEvalResult.model_version, OnlineEvalResult.metric)
    )
    if model_version is not None:
        query = query.where(OnlineEvalResult.model_version == model_version)
    if since is not None:
        query = query.where(OnlineEvalResult.scored_at >= as_utc(since))
    with store.read() as session:
        return [
            OnlineScoreSummary(
                model_version=version,
                metric=metric,
                count=count,
                mean=float(mean) if mean is not None else None,
                errors=errors,
            )
            for version, metric, count, mean, errors in session.execute(query)
        ]
