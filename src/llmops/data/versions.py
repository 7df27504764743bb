"""Dataset versions: rows stored as canonical JSONL in the artifact store, identified by content.

A version's digest is the sha256 of its canonical JSONL bytes (keys sorted, one row a line), so the
same rows always give the same id. Versions are numbered per dataset name; each records how it was
made (the transform, its parameters and report) and its parent versions, which is the lineage the
registry and the privacy tools walk. Committing the same rows twice returns the existing version.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from llmops.errors import InvalidInput, NotFound, did_you_mean
from llmops.store import audit
from llmops.store.artifacts import ArtifactStore
from llmops.store.database import Store, get_or_create
from llmops.store.home import Home
from llmops.store.schema import Dataset, DatasetVersion, DatasetVersionParent

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True)
class DatasetVersionInfo:
    id: int
    name: str
    version: int
    digest: str
    schema_kind: str
    num_rows: int
    num_tokens: int | None
    transform: dict[str, Any] | None
    stats: dict[str, Any] | None
    source: str | None
    created_by: str
    created_at: datetime
    parents: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def erased(self) -> bool:
        """Its rows were purged by a subject erasure (``llmops privacy erase``)."""
        return bool((self.stats or {}).get("erased"))

    def erased_note(self) -> str:
        """What became of an erased version's rows, for messages."""
        successor = (self.stats or {}).get("replaced_by")
        where = f"the remaining rows are in {successor}" if successor else "no rows remained"
        return f"{self.ref} was erased by `llmops privacy erase`: its rows were purged and {where}"


def canonical_jsonl(rows: Sequence[dict[str, Any]]) -> bytes:
    return b"".join(
        json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        for row in rows
    )


def parse_dataset_ref(ref: str) -> tuple[str, int | None]:
    name, sep, suffix = ref.strip().partition("@")
    if not name or set(name) - NAME_CHARS:
        raise InvalidInput(f"invalid dataset reference {ref!r}: use NAME or NAME@VERSION", param="dataset")
    if not sep:
        return name, None
    if not (suffix.isascii() and suffix.isdigit() and len(suffix) <= 18):
        raise InvalidInput(f"dataset version must be a number (1 to 18 digits) in {ref!r}", param="dataset")
    return name, int(suffix)


class DatasetStore:
    """Commit rows as dataset versions and read them back, verified."""

    def __init__(self, store: Store, artifacts: ArtifactStore, actor: str = "unknown") -> None:
        self.store = store
        self.artifacts = artifacts
        self.actor = actor

    @classmethod
    def from_home(cls, home: Home) -> DatasetStore:
        return cls(home.store, home.artifacts, home.actor)

    def commit(
        self,
        name: str,
        rows: Sequence[dict[str, Any]],
        schema_kind: str,
        *,
        transform: dict[str, Any] | None = None,
        parents: Sequence[str] = (),
        source: str | None = None,
        stats: dict[str, Any] | None = None,
        num_tokens: int | None = None,
    ) -> DatasetVersionInfo:
        parse_dataset_ref(name)
        if "@" in name:
            raise InvalidInput("a dataset name cannot contain '@'", param="name")
        digest = self.artifacts.put_bytes(canonical_jsonl(rows))
        with self.store.transaction() as session:
            parent_rows = [self._resolve(session, ref) for ref in parents]
            dataset = self._get_or_create(session, name)
            existing = session.execute(
                select(DatasetVersion).where(
                    DatasetVersion.dataset_id == dataset.id, DatasetVersion.digest == digest
                )
            ).scalar_one_or_none()
            if existing is not None:
                return self._info(session, existing)
            number = (
                session.execute(
                    select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == dataset.id)
                ).scalar()
                or 0
            ) + 1
            row = DatasetVersion(
                dataset_id=dataset.id,
                version=number,
                digest=digest,
                schema_kind=schema_kind,
                num_rows=len(rows),
                num_tokens=num_tokens,
                transform=transform,
                stats=stats,
                source=source,
                created_by=self.actor,
            )
            session.add(row)
            session.flush()
            for parent in parent_rows:
                session.add(DatasetVersionParent(child_id=row.id, parent_id=parent.id))
            after = {
                "version": number,
                "digest": digest,
                "rows": len(rows),
                "parents": list(parents),
                "transform": (transform or {}).get("name"),
            }
            audit.append(
                session,
                actor=self.actor,
                action="dataset.version.create",
                target=f"dataset:{name}",
                after=after,
            )
            return self._info(session, row)

    def get(self, ref: str) -> DatasetVersionInfo:
        with self.store.read() as session:
            return self._info(session, self._resolve(session, ref))

    def rows(self, ref: str | DatasetVersionInfo) -> list[dict[str, Any]]:
        info = ref if isinstance(ref, DatasetVersionInfo) else self.get(ref)
        if info.erased:
            raise NotFound(info.erased_note(), param="dataset", code="erased")
        data = self.artifacts.read_bytes(info.digest)
        return [json.loads(line) for line in data.decode().splitlines() if line]

    def list_datasets(self) -> list[DatasetVersionInfo]:
        """The latest version of every dataset."""
        with self.store.read() as session:
            out = []
            for dataset in session.execute(select(Dataset).order_by(Dataset.name)).scalars():
                out.append(self._info(session, self._resolve(session, dataset.name)))
            return out

    def list_versions(self, name: str) -> list[DatasetVersionInfo]:
        with self.store.read() as session:
            dataset = self._dataset(session, name)
            rows = session.execute(
                select(DatasetVersion)
                .where(DatasetVersion.dataset_id == dataset.id)
                .order_by(DatasetVersion.version)
            ).scalars()
            return [self._info(session, row) for row in rows]

    # ---- internals ----
    def _get_or_create(self, session: Session, name: str) -> Dataset:
        query = select(Dataset).where(Dataset.name == name).with_for_update()
        return get_or_create(session, query, lambda: Dataset(name=name))

    def _dataset(self, session: Session, name: str) -> Dataset:
        dataset = session.execute(select(Dataset).where(Dataset.name == name)).scalar_one_or_none()
        if dataset is None:
            names = session.execute(select(Dataset.name)).scalars()
            raise NotFound(f"no dataset {name!r}.{did_you_mean(name, names)}", param="dataset")
        return dataset

    def _resolve(self, session: Session, ref: str) -> DatasetVersion:
        name, number = parse_dataset_ref(ref)
        dataset = self._dataset(session, name)
        query = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id)
        if number is None:
            row = session.execute(query.order_by(DatasetVersion.version.desc()).limit(1)).scalar_one_or_none()
        else:
            row = session.execute(query.where(DatasetVersion.version == number)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"dataset {name!r} has no version {number}", param="dataset")
        return row

    def _info(self, session: Session, row: DatasetVersion) -> DatasetVersionInfo:
        name = session.get_one(Dataset, row.dataset_id).name
        parents = tuple(
            f"{pname}@{pversion}"
            for pname, pversion in session.execute(
                select(Dataset.name, DatasetVersion.version)
                .join(DatasetVersion, DatasetVersion.dataset_id == Dataset.id)
                .join(DatasetVersionParent, DatasetVersionParent.parent_id == DatasetVersion.id)
                .where(DatasetVersionParent.child_id == row.id)
            )
        )
        return DatasetVersionInfo(
            row.id,
            name,
            row.version,
            row.digest,
            row.schema_kind,
            row.num_rows,
            row.num_tokens,
            row.transform,
            row.stats,
            row.source,
            row.created_by,
            row.created_at,
            parents,
        )
