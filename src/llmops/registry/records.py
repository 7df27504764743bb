"""Typed records the registry hands out (never ORM rows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class DatasetUse:
    """A dataset version a model version was trained, tuned or validated on."""

    dataset: str
    version: int
    digest: str
    role: str


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: int
    digest: str
    format: str
    base: str | None
    source_run_id: str | None
    metrics: dict[str, Any]
    tags: dict[str, Any]
    description: str | None
    creator: str
    created_at: datetime
    aliases: tuple[str, ...] = ()
    datasets: tuple[DatasetUse, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class ModelSummary:
    name: str
    description: str | None
    latest_version: int | None
    versions: int
    aliases: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class AliasMove:
    name: str
    alias: str
    before: int | None
    after: int
