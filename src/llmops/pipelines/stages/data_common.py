"""Helpers the data stages share: digests of dataset versions and checks of cached outputs."""

from __future__ import annotations

from collections.abc import Mapping

from llmops.data.versions import DatasetStore
from llmops.errors import LLMOpsError
from llmops.pipelines.stages.base import StageContext


def datasets(ctx: StageContext) -> DatasetStore:
    return DatasetStore.from_home(ctx.home)


def dataset_digest(ctx: StageContext, ref: str) -> str:
    """The content digest of ``ref`` (a moving ``NAME`` resolves to its latest version now)."""
    return datasets(ctx).get(ref).digest


def datasets_exist(ctx: StageContext, outputs: Mapping[str, str]) -> str | None:
    store = datasets(ctx)
    for key, ref in outputs.items():
        if not ref:
            continue
        try:
            store.get(ref)
        except LLMOpsError as exc:
            return f"output {key} ({ref}) is gone: {exc.message}"
    return None
