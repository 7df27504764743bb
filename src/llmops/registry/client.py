"""The model registry: registered models, immutable versions, aliases, with every change audited.

Contract: ``register`` validates the directory before anything is stored, stores the files in the
artifact store, then writes the version, its dataset links and an audit event in one transaction;
registering the same digest under the same name returns the existing version. ``set_alias`` locks
the model row, so concurrent moves are serialised and each is audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from llmops.errors import InvalidInput, NotFound, did_you_mean
from llmops.registry.records import AliasMove, DatasetUse, ModelSummary, ModelVersionInfo
from llmops.registry.references import ModelRef, check_alias, check_name, parse_ref
from llmops.registry.safety import inspect_model_dir
from llmops.store import audit
from llmops.store.artifacts import ArtifactStore
from llmops.store.database import Store, get_or_create
from llmops.store.home import Home
from llmops.store.schema import (
    Dataset,
    DatasetVersion,
    ModelAlias,
    ModelVersion,
    ModelVersionDataset,
    RegisteredModel,
    Run,
)


class Registry:
    def __init__(
        self,
        store: Store,
        artifacts: ArtifactStore,
        actor: str = "unknown",
        remote_code_allow: frozenset[str] = frozenset(),
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.actor = actor
        self.remote_code_allow = remote_code_allow

    @classmethod
    def from_home(cls, home: Home) -> Registry:
        allow = frozenset(home.settings.trust_remote_code_allow)
        return cls(home.store, home.artifacts, home.actor, allow)

    # ---- writes ----
    def register(
        self,
        path: Path,
        name: str,
        *,
        description: str | None = None,
        base: str | None = None,
        source_run_id: str | None = None,
        datasets: Sequence[tuple[int, str]] = (),
        metrics: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> ModelVersionInfo:
        """Register the model directory ``path`` as the next version of ``name``.

        ``datasets`` holds ``(dataset_version_id, role)`` pairs; ``base`` is a reference to the
        version this one was tuned from (required for a PEFT adapter).
        """
        check_name(name)
        info = inspect_model_dir(Path(path), remote_code_allow=self.remote_code_allow, ident=name)
        if info.format == "peft-adapter" and base is None:
            raise InvalidInput("a PEFT adapter needs its base model: pass --base NAME@VERSION", param="base")
        digest = self.artifacts.put_dir(info.path)
        with self.store.transaction() as session:
            base_id = self._resolve(session, parse_ref(base)).id if base else None
            self._check_links(session, source_run_id, datasets)
            model = self._get_or_create_model(session, name)
            existing = session.execute(
                select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.digest == digest)
            ).scalar_one_or_none()
            if existing is not None:
                return self._info(session, existing)
            number = (
                session.execute(
                    select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)
                ).scalar()
                or 0
            ) + 1
            row = ModelVersion(
                model_id=model.id,
                version=number,
                digest=digest,
                format=info.format,
                base_version_id=base_id,
                source_run_id=source_run_id,
                metrics=metrics or {},
                tags=tags or {},
                description=description,
                creator=self.actor,
            )
            session.add(row)
            session.flush()
            for dataset_version_id, role in datasets:
                session.add(
                    ModelVersionDataset(
                        model_version_id=row.id, dataset_version_id=dataset_version_id, role=role
                    )
                )
            after = {"version": number, "digest": digest, "format": info.format, "base": base}
            audit.append(
                session,
                actor=self.actor,
                action="model.register",
                target=f"model:{name}",
                reason=reason,
                after=after,
            )
            return self._info(session, row)

    def set_alias(self, name: str, alias: str, version: int, reason: str | None = None) -> AliasMove:
        check_alias(alias)
        with self.store.transaction() as session:
            model = self._model(session, name, lock=True)
            target = self._resolve(session, ModelRef(name, version=version), model=model)
            current = session.get(ModelAlias, (model.id, alias))
            before = _version_number(session, current.version_id) if current else None
            if current is None:
                session.add(ModelAlias(model_id=model.id, alias=alias, version_id=target.id))
            else:
                current.version_id = target.id
            audit.append(
                session,
                actor=self.actor,
                action="model.alias.set",
                target=f"model:{name}@{alias}",
                reason=reason,
                before={"version": before},
                after={"version": version},
            )
            return AliasMove(name, alias, before, version)

    def delete_alias(self, name: str, alias: str, reason: str | None = None) -> AliasMove:
        with self.store.transaction() as session:
            model = self._model(session, name, lock=True)
            current = session.get(ModelAlias, (model.id, alias))
            if current is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}", param="alias")
            before = _version_number(session, current.version_id)
            session.delete(current)
            audit.append(
                session,
                actor=self.actor,
                action="model.alias.delete",
                target=f"model:{name}@{alias}",
                reason=reason,
                before={"version": before},
            )
            return AliasMove(name, alias, before, 0)

    def update_metrics(self, ref: str, metrics: dict[str, Any]) -> ModelVersionInfo:
        """Merge evaluation metrics into a version (versions are immutable in their files only)."""
        with self.store.transaction() as session:
            row = self._resolve(session, parse_ref(ref))
            row.metrics = {**(row.metrics or {}), **metrics}
            return self._info(session, row)

    def merge_tags(self, ref: str, tags: dict[str, Any], reason: str | None = None) -> ModelVersionInfo:
        """Merge ``tags`` (for example gate results) into a version's tags, audited."""
        with self.store.transaction() as session:
            row = self._resolve(session, parse_ref(ref))
            before = dict(row.tags or {})
            row.tags = {**before, **tags}
            info = self._info(session, row)
            audit.append(
                session,
                actor=self.actor,
                action="model.tags.merge",
                target=f"model:{info.ref}",
                reason=reason,
                after={"keys": sorted(tags)},
            )
            return info

    # ---- reads ----
    def get(self, ref: str | ModelRef) -> ModelVersionInfo:
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        with self.store.read() as session:
            return self._info(session, self._resolve(session, parsed))

    def local_path(self, ref: str | ModelRef) -> Path:
        """The version's files on disk, verified against its digest before they are handed out."""
        return self.artifacts.path(self.get(ref).digest)

    def list_models(self) -> list[ModelSummary]:
        with self.store.read() as session:
            out = []
            for model in session.execute(select(RegisteredModel).order_by(RegisteredModel.name)).scalars():
                numbers = (
                    session.execute(select(ModelVersion.version).where(ModelVersion.model_id == model.id))
                    .scalars()
                    .all()
                )
                out.append(
                    ModelSummary(
                        model.name,
                        model.description,
                        max(numbers, default=None),
                        len(numbers),
                        _aliases_of_model(session, model.id),
                    )
                )
            return out

    def list_versions(self, name: str) -> list[ModelVersionInfo]:
        with self.store.read() as session:
            model = self._model(session, name)
            rows = session.execute(
                select(ModelVersion).where(ModelVersion.model_id == model.id).order_by(ModelVersion.version)
            ).scalars()
            return [self._info(session, row) for row in rows]

    # ---- internals ----
    def _get_or_create_model(self, session: Session, name: str) -> RegisteredModel:
        query = select(RegisteredModel).where(RegisteredModel.name == name).with_for_update()
        return get_or_create(session, query, lambda: RegisteredModel(name=name))

    def _model(self, session: Session, name: str, *, lock: bool = False) -> RegisteredModel:
        query = select(RegisteredModel).where(RegisteredModel.name == name)
        model = session.execute(query.with_for_update() if lock else query).scalar_one_or_none()
        if model is None:
            names = list(session.execute(select(RegisteredModel.name)).scalars())
            raise NotFound(f"no registered model {name!r}.{did_you_mean(name, names)}", param="model")
        return model

    def _resolve(self, session: Session, ref: ModelRef, model: RegisteredModel | None = None) -> ModelVersion:
        model = model or self._model(session, ref.name)
        query = select(ModelVersion).where(ModelVersion.model_id == model.id)
        if ref.alias is not None:
            alias = session.get(ModelAlias, (model.id, ref.alias))
            if alias is None:
                known = list(_aliases_of_model(session, model.id))
                hint = did_you_mean(ref.alias, known) or (
                    f" Its aliases: {', '.join(known)}." if known else ""
                )
                raise NotFound(f"model {ref.name!r} has no alias {ref.alias!r}.{hint}", param="model")
            row = session.get(ModelVersion, alias.version_id)
        elif ref.version is not None:
            row = session.execute(query.where(ModelVersion.version == ref.version)).scalar_one_or_none()
            if row is None:
                numbers = session.execute(query.with_only_columns(ModelVersion.version)).scalars().all()
                raise NotFound(
                    f"model {ref.name!r} has no version {ref.version}; versions: {sorted(numbers) or 'none'}",
                    param="model",
                )
        else:
            row = session.execute(query.order_by(ModelVersion.version.desc()).limit(1)).scalar_one_or_none()
            if row is None:
                raise NotFound(f"model {ref.name!r} has no versions yet", param="model")
        assert row is not None
        return row

    def _check_links(self, session: Session, run_id: str | None, datasets: Sequence[tuple[int, str]]) -> None:
        if run_id is not None and session.get(Run, run_id) is None:
            raise NotFound(f"no tracking run {run_id!r}", param="source_run_id")
        for dataset_version_id, _role in datasets:
            if session.get(DatasetVersion, dataset_version_id) is None:
                raise NotFound(f"no dataset version with id {dataset_version_id}", param="datasets")

    def _info(self, session: Session, row: ModelVersion) -> ModelVersionInfo:
        model = session.get(RegisteredModel, row.model_id)
        assert model is not None
        base = None
        if row.base_version_id is not None:
            base_row = session.get(ModelVersion, row.base_version_id)
            assert base_row is not None
            base_model = session.get(RegisteredModel, base_row.model_id)
            base = f"{base_model.name if base_model else '?'}@{base_row.version}"
        aliases = tuple(
            sorted(a for a, v in _aliases_of_model(session, model.id).items() if v == row.version)
        )
        return ModelVersionInfo(
            name=model.name,
            version=row.version,
            digest=row.digest,
            format=row.format,
            base=base,
            source_run_id=row.source_run_id,
            metrics=dict(row.metrics or {}),
            tags=dict(row.tags or {}),
            description=row.description,
            creator=row.creator,
            created_at=row.created_at,
            aliases=aliases,
            datasets=_datasets_of_version(session, row.id),
        )


def _version_number(session: Session, version_id: int) -> int | None:
    row = session.get(ModelVersion, version_id)
    return row.version if row else None


def _aliases_of_model(session: Session, model_id: int) -> dict[str, int]:
    rows = session.execute(
        select(ModelAlias.alias, ModelVersion.version)
        .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
        .where(ModelAlias.model_id == model_id)
        .order_by(ModelAlias.alias)
    )
    return {alias: version for alias, version in rows}


def _datasets_of_version(session: Session, version_id: int) -> tuple[DatasetUse, ...]:
    rows = session.execute(
        select(Dataset.name, DatasetVersion.version, DatasetVersion.digest, ModelVersionDataset.role)
        .join(DatasetVersion, DatasetVersion.id == ModelVersionDataset.dataset_version_id)
        .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
        .where(ModelVersionDataset.model_version_id == version_id)
        .order_by(ModelVersionDataset.role, Dataset.name)
    )
    return tuple(DatasetUse(n, v, d, r) for n, v, d, r in rows)
