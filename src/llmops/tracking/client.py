"""The tracking client: start runs, log to them, and read them back as typed records."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from llmops.errors import InvalidInput, NotFound
from llmops.store.artifacts import ArtifactStore
from llmops.store.database import Store, get_or_create
from llmops.store.home import Home
from llmops.store.schema import Experiment, Run, RunArtifact, RunMetric, RunParam, RunTag, utcnow
from llmops.tracking.writer import MetricWriter

RunStatus = Literal["RUNNING", "FINISHED", "FAILED", "KILLED"]
MAX_PARAM_CHARS = 6000


@dataclass(frozen=True)
class MetricPoint:
    key: str
    value: float
    step: int
    ts: datetime


@dataclass(frozen=True)
class RunInfo:
    id: str
    experiment: str
    name: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    error: str | None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    latest_metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)


class Tracker:
    """Reads and writes experiments and runs in one store."""

    def __init__(self, store: Store, artifacts: ArtifactStore) -> None:
        self.store = store
        self.artifacts = artifacts

    @classmethod
    def from_home(cls, home: Home) -> Tracker:
        return cls(home.store, home.artifacts)

    def start_run(
        self,
        experiment: str,
        name: str | None = None,
        *,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
    ) -> ActiveRun:
        if not experiment or not experiment.strip():
            raise InvalidInput("experiment name must not be empty", param="experiment")
        run_id = uuid.uuid4().hex
        with self.store.transaction() as session:
            exp_id = self._experiment_id(session, experiment)
            session.add(Run(id=run_id, experiment_id=exp_id, name=name or run_id[:8], status="RUNNING"))
        run = ActiveRun(self, run_id)
        if params:
            run.log_params(params)
        if tags:
            run.set_tags(tags)
        return run

    def _experiment_id(self, session: Session, name: str) -> int:
        query = select(Experiment).where(Experiment.name == name)
        experiment = get_or_create(session, query, lambda: Experiment(name=name))
        session.flush()
        return experiment.id

    def get_run(self, run_id: str) -> RunInfo:
        with self.store.read() as session:
            row = session.get(Run, run_id)
            if row is None:
                candidates = session.execute(select(Run.id).where(Run.id.startswith(run_id))).scalars().all()
                if len(candidates) != 1:
                    raise NotFound(f"no run {run_id!r}; `llmops runs list` shows the runs", param="run")
                row = session.get(Run, candidates[0])
                assert row is not None
            return self._info(session, row, full=True)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Tag a run after it ended (facts that come later, such as the gates of an evaluation)."""
        with self.store.transaction() as session:
            if session.get(Run, run_id) is None:
                raise NotFound(f"no run {run_id!r}; `llmops runs list` shows the runs", param="run")
            for key, value in tags.items():
                session.merge(RunTag(run_id=run_id, key=key, value=str(value)))

    def list_runs(self, experiment: str | None = None, limit: int = 50) -> list[RunInfo]:
        with self.store.read() as session:
            query = select(Run).order_by(Run.started_at.desc()).limit(limit)
            if experiment is not None:
                query = query.join(Experiment).where(Experiment.name == experiment)
            return [self._info(session, row, full=False) for row in session.execute(query).scalars()]

    def find_runs(
        self, experiment: str, tags: dict[str, str], status: str | None = "FINISHED"
    ) -> list[RunInfo]:
        """Runs of ``experiment`` carrying every tag in ``tags``, newest first."""
        with self.store.read() as session:
            query = select(Run).join(Experiment).where(Experiment.name == experiment)
            for key, value in tags.items():
                tagged = select(RunTag.run_id).where(RunTag.key == key, RunTag.value == value)
                query = query.where(Run.id.in_(tagged))
            if status is not None:
                query = query.where(Run.status == status)
            rows = session.execute(query.order_by(Run.started_at.desc())).scalars()
            return [self._info(session, row, full=True) for row in rows]

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        with self.store.read() as session:
            rows = session.execute(
                select(RunMetric)
                .where(RunMetric.run_id == run_id, RunMetric.key == key)
                .order_by(RunMetric.step)
            ).scalars()
            return [MetricPoint(r.key, r.value, r.step, r.ts) for r in rows]

    def _info(self, session: Session, row: Run, *, full: bool) -> RunInfo:
        experiment = session.get(Experiment, row.experiment_id)
        info = RunInfo(
            id=row.id,
            experiment=experiment.name if experiment else "?",
            name=row.name,
            status=row.status,
            started_at=row.started_at,
            ended_at=row.ended_at,
            error=row.error,
        )
        if full:
            q = session.execute
            info.params.update(
                {p.key: p.value for p in q(select(RunParam).where(RunParam.run_id == row.id)).scalars()}
            )
            info.tags.update(
                {t.key: t.value for t in q(select(RunTag).where(RunTag.run_id == row.id)).scalars()}
            )
            info.artifacts.update(
                {
                    a.name: a.digest
                    for a in q(select(RunArtifact).where(RunArtifact.run_id == row.id)).scalars()
                }
            )
            info.latest_metrics.update(_latest_metrics(session, row.id))
        return info


def _latest_metrics(session: Session, run_id: str) -> dict[str, float]:
    last_step = (
        select(RunMetric.key, func.max(RunMetric.step).label("step"))
        .where(RunMetric.run_id == run_id)
        .group_by(RunMetric.key)
        .subquery()
    )
    rows = session.execute(
        select(RunMetric.key, RunMetric.value, RunMetric.id)
        .join(last_step, (RunMetric.key == last_step.c.key) & (RunMetric.step == last_step.c.step))
        .where(RunMetric.run_id == run_id)
        .order_by(RunMetric.id)
    )
    return {key: value for key, value, _ in rows}


class ActiveRun:
    """A run being written. Ends FINISHED on a clean exit, FAILED on an exception, KILLED on Ctrl-C."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self.tracker = tracker
        self.id = run_id
        self._writer = MetricWriter(tracker.store, run_id)
        self._steps: dict[str, int] = {}
        self._ended = False

    def log_params(self, params: dict[str, Any]) -> None:
        rows = [
            RunParam(run_id=self.id, key=str(k), value=str(v)[:MAX_PARAM_CHARS]) for k, v in params.items()
        ]
        with self.tracker.store.transaction() as session:
            for row in rows:
                session.merge(row)

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def set_tags(self, tags: dict[str, str]) -> None:
        with self.tracker.store.transaction() as session:
            for key, value in tags.items():
                session.merge(RunTag(run_id=self.id, key=key, value=str(value)))

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        if step is None:
            step = self._steps.get(key, -1) + 1
        self._steps[key] = step
        self._writer.add(key, float(value), int(step), utcnow())

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self.log_metric(key, value, step)

    def log_artifact(self, path: Path, name: str | None = None) -> str:
        """Store a file or directory in the artifact store and link it to this run."""
        digest = self.tracker.artifacts.put(Path(path))
        kind = self.tracker.artifacts.kind(digest)
        with self.tracker.store.transaction() as session:
            session.merge(RunArtifact(run_id=self.id, name=name or Path(path).name, digest=digest, kind=kind))
        return digest

    def flush(self) -> None:
        self._writer.flush()

    def end(self, status: RunStatus = "FINISHED", error: str | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        self._writer.close()
        with self.tracker.store.transaction() as session:
            row = session.get(Run, self.id)
            assert row is not None
            row.status, row.ended_at, row.error = status, utcnow(), error

    def info(self) -> RunInfo:
        self.flush()
        return self.tracker.get_run(self.id)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.end("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end("KILLED", "interrupted")
        else:
            self.end("FAILED", f"{exc_type.__name__}: {exc}")
