"""Lineage: what produced a model version, and which versions descend from a dataset.

Upstream: the version's training run, its dataset versions (with their own parent datasets and the
transform that made each), and the chain of base versions. Downstream: versions tuned from it, and,
for a dataset version, every model version trained on it or on a dataset derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmops.errors import NotFound
from llmops.registry.client import Registry
from llmops.registry.records import ModelVersionInfo
from llmops.registry.references import parse_ref
from llmops.store.schema import (
    Dataset,
    DatasetVersion,
    DatasetVersionParent,
    Experiment,
    ModelVersion,
    ModelVersionDataset,
    RegisteredModel,
    Run,
    RunParam,
)


@dataclass(frozen=True)
class DatasetNode:
    name: str
    version: int
    digest: str
    role: str | None
    num_rows: int
    transform: dict[str, Any] | None
    parents: tuple[DatasetNode, ...] = ()


@dataclass(frozen=True)
class RunSummary:
    id: str
    experiment: str
    name: str
    status: str
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Lineage:
    version: ModelVersionInfo
    run: RunSummary | None
    datasets: tuple[DatasetNode, ...]
    ancestors: tuple[ModelVersionInfo, ...]
    descendants: tuple[str, ...]


def lineage(registry: Registry, ref: str) -> Lineage:
    version = registry.get(ref)
    ancestors: list[ModelVersionInfo] = []
    current = version
    while current.base is not None and len(ancestors) < 100:
        current = registry.get(current.base)
        ancestors.append(current)
    with registry.store.read() as session:
        row = _version_row(session, version.name, version.version)
        datasets = tuple(
            _dataset_node(session, dataset_version_id, role, depth=0)
            for dataset_version_id, role in session.execute(
                select(ModelVersionDataset.dataset_version_id, ModelVersionDataset.role).where(
                    ModelVersionDataset.model_version_id == row.id
                )
            )
        )
        run = _run_summary(session, version.source_run_id) if version.source_run_id else None
        children = session.execute(
            select(ModelVersion).where(ModelVersion.base_version_id == row.id)
        ).scalars()
        descendants = tuple(_ref_of(session, child) for child in children)
    return Lineage(version, run, datasets, tuple(ancestors), descendants)


def versions_from_dataset(registry: Registry, dataset: str, version: int) -> list[ModelVersionInfo]:
    """Model versions trained on this dataset version or on any dataset version derived from it,
    and the versions tuned from those."""
    with registry.store.read() as session:
        start = session.execute(
            select(DatasetVersion.id)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(Dataset.name == dataset, DatasetVersion.version == version)
        ).scalar_one_or_none()
        if start is None:
            raise NotFound(f"no dataset version {dataset}@{version}", param="dataset")
        dataset_ids = _derived_datasets(session, start)
        frontier = set(
            session.execute(
                select(ModelVersionDataset.model_version_id).where(
                    ModelVersionDataset.dataset_version_id.in_(dataset_ids)
                )
            ).scalars()
        )
        found: set[int] = set()
        while frontier:
            found |= frontier
            children = select(ModelVersion.id).where(ModelVersion.base_version_id.in_(frontier))
            frontier = set(session.execute(children).scalars()) - found
        refs = [_ref_of(session, session.get_one(ModelVersion, vid)) for vid in sorted(found)]
    return [registry.get(ref) for ref in refs]


def _derived_datasets(session: Session, start: int) -> set[int]:
    seen, frontier = {start}, {start}
    while frontier:
        query = select(DatasetVersionParent.child_id).where(DatasetVersionParent.parent_id.in_(frontier))
        frontier = set(session.execute(query).scalars()) - seen
        seen |= frontier
    return seen


def _version_row(session: Session, name: str, number: int) -> ModelVersion:
    return session.execute(
        select(ModelVersion)
        .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
        .where(RegisteredModel.name == name, ModelVersion.version == number)
    ).scalar_one()


def _ref_of(session: Session, row: ModelVersion) -> str:
    model = session.get_one(RegisteredModel, row.model_id)
    return str(parse_ref(f"{model.name}@{row.version}"))


def _dataset_node(session: Session, dataset_version_id: int, role: str | None, depth: int) -> DatasetNode:
    row = session.get_one(DatasetVersion, dataset_version_id)
    name = session.get_one(Dataset, row.dataset_id).name
    parents: tuple[DatasetNode, ...] = ()
    if depth < 20:
        parent_ids = session.execute(
            select(DatasetVersionParent.parent_id).where(DatasetVersionParent.child_id == row.id)
        ).scalars()
        parents = tuple(_dataset_node(session, pid, None, depth + 1) for pid in parent_ids)
    return DatasetNode(name, row.version, row.digest, role, row.num_rows, row.transform, parents)


def _run_summary(session: Session, run_id: str) -> RunSummary | None:
    run = session.get(Run, run_id)
    if run is None:
        return None
    experiment = session.get_one(Experiment, run.experiment_id).name
    params = {
        p.key: p.value for p in session.execute(select(RunParam).where(RunParam.run_id == run_id)).scalars()
    }
    return RunSummary(run.id, experiment, run.name, run.status, params)
