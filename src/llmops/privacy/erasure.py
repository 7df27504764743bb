"""Erasing one subject: delete their logged requests and feedback, rewrite every dataset version
holding their rows into a new version without them (the old version's bytes purged and the version
marked erased), purge evaluation results over the old versions, flag the model versions trained on
them, and record one audit event (with a hash of the subject, never the subject itself).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select

from llmops.data.operations import length_stats
from llmops.data.schemas import parse_kind
from llmops.data.versions import DatasetStore
from llmops.errors import NotFound
from llmops.privacy.subject import SubjectReport, find_subject, row_belongs
from llmops.registry import Registry
from llmops.store import audit
from llmops.store.home import Home
from llmops.store.schema import Dataset, DatasetVersion, GatewayRequest, OnlineEvalResult, RequestFeedback
from llmops.tracking import Tracker


@dataclass(frozen=True)
class ErasureResult:
    report: SubjectReport
    replaced: dict[str, str]  # old dataset ref -> new ref
    audit_seq: int


def erase_subject(home: Home, subject: str, *, reason: str | None = None) -> ErasureResult:
    report = find_subject(home, subject)
    if report.empty:
        raise NotFound("no data of this subject was found", param="subject")
    datasets = DatasetStore.from_home(home)
    replaced: dict[str, str] = {}
    for ref in report.dataset_versions:
        old = datasets.get(ref)
        kept = [row for row in datasets.rows(old) if not row_belongs(row, subject)]
        if kept:
            record = {"name": "erase", "params": {"rows_removed": report.rows_per_dataset[ref]}}
            kind = parse_kind(old.schema_kind)
            stats = length_stats(kept, kind)
            new = datasets.commit(
                old.name,
                kept,
                kind.value,
                transform=record,
                parents=[ref],
                source=old.source,
                stats=stats,
                num_tokens=stats["tokens"],
            )
            replaced[ref] = new.ref
        home.artifacts.purge(old.digest)
    _purge_eval_results(home, report)
    _flag_models(home, report)
    with home.store.transaction() as session:
        session.execute(delete(RequestFeedback).where(RequestFeedback.request_id.in_(report.request_ids)))
        session.execute(delete(OnlineEvalResult).where(OnlineEvalResult.request_id.in_(report.request_ids)))
        session.execute(delete(GatewayRequest).where(GatewayRequest.id.in_(report.request_ids)))
        for ref in report.dataset_versions:
            name, _, number = ref.partition("@")
            row = session.execute(
                select(DatasetVersion)
                .join(Dataset)
                .where(Dataset.name == name, DatasetVersion.version == int(number))
            ).scalar_one()
            row.stats = {**(row.stats or {}), "erased": True, "replaced_by": replaced.get(ref)}
        event = audit.append(
            session,
            actor=home.actor,
            action="privacy.erase",
            target=f"subject:{report.subject_hash}",
            reason=reason,
            after={
                "requests": len(report.request_ids),
                "feedback": report.feedback_rows,
                "datasets_replaced": replaced,
                "eval_runs_purged": list(report.eval_runs),
                "models_flagged": list(report.model_versions),
            },
        )
    return ErasureResult(report, replaced, event.seq)


def _purge_eval_results(home: Home, report: SubjectReport) -> None:
    tracker = Tracker.from_home(home)
    for run_id in report.eval_runs:
        digest = tracker.get_run(run_id).artifacts.get("results.json")
        if digest:
            home.artifacts.purge(digest)


def _flag_models(home: Home, report: SubjectReport) -> None:
    registry = Registry.from_home(home)
    for ref in report.model_versions:
        registry.merge_tags(
            ref,
            {"privacy/affected": {"subject": report.subject_hash, "datasets": list(report.dataset_versions)}},
            reason="trained on data since erased",
        )
