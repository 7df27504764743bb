"""Drift references and reports in the store.

A reference is a ``DriftProfile`` kept as an artifact; the ``drift_references`` row says which
model version it is for (and, when it was set for a deployment, which deployment), so every
serving process and ``llmops monitor drift`` compare against the same profile. Each drift check is
kept as a ``drift_reports`` row (the whole ``DriftReport`` as JSON). References are built from a
dataset version's prompts (``profile_from_dataset``); live windows come from the request log
(``window_from_log``). Reads and writes are blocking: on an event loop call them in a thread.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from llmops.data.versions import DatasetStore
from llmops.errors import InvalidInput, NotFound
from llmops.monitor.drift import DriftReport
from llmops.monitor.drift_config import DriftConfig
from llmops.monitor.drift_features import DriftProfile, DriftSample, build_profile
from llmops.monitor.drift_sources import load_profile, logged_prompts, prompts_from_rows, save_profile
from llmops.monitor.request_search import as_utc
from llmops.store import audit
from llmops.store.artifacts import ArtifactStore
from llmops.store.database import Store
from llmops.store.schema import DriftReference, DriftReportRecord, utcnow


@dataclass(frozen=True)
class StoredReference:
    """Which reference profile (an artifact digest) a model version is compared with, and its source."""

    model_version: str
    deployment: str | None
    digest: str
    source: str
    created_at: datetime


def profile_from_dataset(datasets: DatasetStore, ref: str, config: DriftConfig | None = None) -> DriftProfile:
    """The reference profile of a dataset version's prompts (``InvalidInput`` if it has too few).

    Deterministic: the same dataset version and config give the same profile and digest.
    """
    info = datasets.get(ref)
    prompts = prompts_from_rows(datasets.rows(info))
    if not prompts:
        raise InvalidInput(
            f"dataset {info.ref} has no prompts to build a drift reference from", param="dataset"
        )
    profile = build_profile(DriftSample.of(prompts), config, source=f"dataset {info.ref}")
    # dated by the dataset version, so one version always gives the same profile (and artifact digest)
    return profile.model_copy(update={"created_at": as_utc(info.created_at)})


def window_from_log(
    store: Store, model_version: str, *, since: datetime, until: datetime | None = None, limit: int = 5000
) -> DriftSample:
    """The prompts ``model_version`` received in ``[since, until)`` (newest ``limit``) as a window."""
    return DriftSample.of(
        logged_prompts(store, model_version=model_version, since=since, until=until, limit=limit)
    )


def save_reference(
    store: Store,
    artifacts: ArtifactStore,
    model_version: str,
    profile: DriftProfile,
    *,
    deployment: str | None = None,
    actor: str = "unknown",
    reason: str | None = None,
) -> StoredReference:
    """Store ``profile`` as ``model_version``'s reference (replacing an earlier one), with an audit event."""
    digest = save_profile(artifacts, profile)
    now = utcnow()
    with store.transaction() as session:
        row = session.get(DriftReference, model_version, with_for_update=True)
        before = None if row is None else {"digest": row.profile_digest, "source": row.source}
        if row is None:
            row = DriftReference(model_version=model_version)
            session.add(row)
        row.deployment, row.profile_digest, row.source = deployment, digest, profile.source[:500]
        row.created_by, row.created_at = actor[:200], now
        audit.append(
            session,
            actor=actor,
            action="monitor.drift_reference.set",
            target=f"model_version:{model_version}",
            reason=reason,
            before=before,
            after={"digest": digest, "source": profile.source, "deployment": deployment},
        )
    return StoredReference(model_version, deployment, digest, profile.source, now)


def load_references(store: Store) -> list[StoredReference]:
    """Every stored reference, oldest first (a later one for the same deployment wins)."""
    with store.read() as session:
        rows = list(session.execute(select(DriftReference).order_by(DriftReference.created_at)).scalars())
    return [
        StoredReference(row.model_version, row.deployment, row.profile_digest, row.source, row.created_at)
        for row in rows
    ]


def reference_profile(store: Store, artifacts: ArtifactStore, model_version: str) -> DriftProfile:
    """The stored reference profile of ``model_version`` (``NotFound`` when none was set)."""
    with store.read() as session:
        row = session.get(DriftReference, model_version)
        digest = None if row is None else row.profile_digest
    if digest is None:
        raise NotFound(
            f"model version {model_version!r} has no drift reference; set one with `llmops monitor "
            f"reference --version {model_version} --dataset DATASET@VERSION` (or PUT "
            "/api/deployments/NAME/drift-reference), or pass --reference DATASET@VERSION",
            param="reference",
        )
    return load_profile(artifacts, digest)


def report_row(report: DriftReport) -> DriftReportRecord:
    """The ``drift_reports`` row of one check."""
    return DriftReportRecord(
        id=uuid.uuid4().hex,
        model_version=report.model_version or "",
        checked_at=report.checked_at,
        drifted=report.drifted,
        report=report.model_dump(mode="json"),
    )


def save_report(store: Store, report: DriftReport) -> None:
    """Store one report now (the CLI; serving processes queue ``report_row`` on their writer)."""
    with store.transaction() as session:
        session.add(report_row(report))


def list_reports(store: Store, *, model_version: str | None = None, limit: int = 20) -> list[DriftReport]:
    """Stored drift reports, newest first."""
    if limit < 1:
        raise InvalidInput("limit must be at least 1", param="limit")
    query = select(DriftReportRecord).order_by(DriftReportRecord.checked_at.desc()).limit(limit)
    if model_version is not None:
        query = query.where(DriftReportRecord.model_version == model_version)
    with store.read() as session:
        return [DriftReport.model_validate(row.report) for row in session.execute(query).scalars()]
