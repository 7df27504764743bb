"""Finding one subject's data: request-log rows, dataset versions holding their rows, and what
was built from those versions (evaluation runs, model versions)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from llmops.data.versions import DatasetStore
from llmops.registry import Registry
from llmops.registry.lineage import versions_from_dataset
from llmops.store.home import Home
from llmops.store.schema import Dataset, DatasetVersion, GatewayRequest, RequestFeedback
from llmops.tracking import Tracker

SUBJECT_FIELDS = ("user", "subject")


def subject_hash(subject: str) -> str:
    """What audit events record instead of the subject id (itself personal data)."""
    return hashlib.sha256(subject.encode()).hexdigest()[:16]


def row_belongs(row: dict[str, Any], subject: str) -> bool:
    return any(row.get(name) == subject for name in SUBJECT_FIELDS)


@dataclass(frozen=True)
class SubjectReport:
    subject_hash: str
    request_ids: tuple[str, ...]
    feedback_rows: int
    dataset_versions: tuple[str, ...]
    eval_runs: tuple[str, ...]
    model_versions: tuple[str, ...]
    rows_per_dataset: dict[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.request_ids or self.dataset_versions)


def find_subject(home: Home, subject: str) -> SubjectReport:
    datasets = DatasetStore.from_home(home)
    with home.store.read() as session:
        request_ids = tuple(
            session.execute(select(GatewayRequest.id).where(GatewayRequest.user == subject)).scalars()
        )
        feedback = len(
            session.execute(
                select(RequestFeedback.id).where(RequestFeedback.request_id.in_(request_ids))
            ).all()
        )
        refs = [
            f"{name}@{version}"
            for name, version, erased in session.execute(
                select(Dataset.name, DatasetVersion.version, DatasetVersion.stats).join(Dataset)
            )
            if not (erased or {}).get("erased")
        ]
    holding: dict[str, int] = {}
    for ref in refs:
        count = sum(row_belongs(row, subject) for row in datasets.rows(ref))
        if count:
            holding[ref] = count
    tracker = Tracker.from_home(home)
    eval_runs = tuple(
        run.id
        for run in tracker.list_runs("eval", limit=10_000)
        if tracker.get_run(run.id).params.get("dataset") in holding
    )
    registry = Registry.from_home(home)
    models: set[str] = set()
    for ref in holding:
        name, _, version = ref.partition("@")
        models |= {v.ref for v in versions_from_dataset(registry, name, int(version))}
    return SubjectReport(
        subject_hash(subject),
        request_ids,
        feedback,
        tuple(holding),
        eval_runs,
        tuple(sorted(models)),
        holding,
    )
