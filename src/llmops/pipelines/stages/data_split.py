"""`data.split`: deterministic train/validation/test versions of a dataset version."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from llmops.data import operations
from llmops.data.split import SplitFractions
from llmops.pipelines.stages.base import StageContext, StageKind, StageOutcome, StageParams
from llmops.pipelines.stages.data_common import dataset_digest, datasets, datasets_exist


class SplitParams(StageParams):
    input: str = Field(description="Dataset reference to split.")
    key: str | None = Field(None, description="Row field to split by (rows sharing it stay together).")
    seed: int = Field(0, description="Split seed.")
    train: float = Field(0.8, ge=0, le=1, description="Share of rows in NAME-train.")
    validation: float = Field(0.1, ge=0, le=1, description="Share of rows in NAME-validation.")
    test: float = Field(0.1, ge=0, le=1, description="Share of rows in NAME-test.")


class DataSplit(StageKind):
    kind = "data.split"
    params = SplitParams
    outputs = ("train", "validation", "test")
    summary = "Split a dataset version into NAME-train, NAME-validation and NAME-test."

    def fingerprint(self, ctx: StageContext, params: StageParams) -> dict[str, str]:
        assert isinstance(params, SplitParams)
        return {"input": dataset_digest(ctx, params.input)}

    def run(self, ctx: StageContext, params: StageParams) -> StageOutcome:
        assert isinstance(params, SplitParams)
        fractions = SplitFractions(params.train, params.validation, params.test)
        made = operations.split(
            datasets(ctx),
            params.input,
            seed=params.seed,
            key=params.key,
            fractions=fractions,
            context=ctx.lineage,
        )
        outputs = {
            "train": made.train.ref,
            "validation": made.validation.ref if made.validation else "",
            "test": made.test.ref if made.test else "",
        }
        counts = ", ".join(f"{k} {v or 'empty'}" for k, v in outputs.items())
        return StageOutcome(outputs, message=counts)

    def still_valid(self, ctx: StageContext, params: StageParams, outputs: Mapping[str, str]) -> str | None:
        return datasets_exist(ctx, outputs)


STAGE = DataSplit()
