"""Feedback per model version: how much, thumbs up and down, mean score, over a window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select

from llmops.store.database import Store
from llmops.store.schema import RequestFeedback


@dataclass(frozen=True)
class VersionFeedback:
    model_version: str
    feedback: int
    thumbs_up: int
    thumbs_down: int
    mean_score: float | None

    @property
    def positive_share(self) -> float | None:
        rated = self.thumbs_up + self.thumbs_down
        return self.thumbs_up / rated if rated else None


def feedback_by_version(store: Store, since: datetime) -> list[VersionFeedback]:
    version = func.coalesce(RequestFeedback.model_version, "-")
    query = (
        select(
            version,
            func.count(),
            func.sum(case((RequestFeedback.thumbs == "up", 1), else_=0)),
            func.sum(case((RequestFeedback.thumbs == "down", 1), else_=0)),
            func.avg(RequestFeedback.score),
        )
        .where(RequestFeedback.created_at >= since)
        .group_by(version)
        .order_by(version)
    )
    with store.read() as session:
        return [
            VersionFeedback(
                str(v), int(n), int(up or 0), int(down or 0), float(mean) if mean is not None else None
            )
            for v, n, up, down, mean in session.execute(query)
        ]
