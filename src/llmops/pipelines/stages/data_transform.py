"""`data.transform`: one cleaning step (normalise, dedup, length filter, PII scrub) on a version."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from llmops.data import operations
from llmops.pipelines.stages.base import StageContext, StageKind, StageOutcome, StageParams
from llmops.pipelines.stages.data_common import dataset_digest, datasets, datasets_exist

Step = Literal["normalize", "dedup-exact", "dedup-near", "filter-length", "scrub-pii"]


class TransformParams(StageParams):
    input: str = Field(description="Dataset reference to clean, e.g. `${stages.synth.outputs.dataset}`.")
    step: Step = Field(description="The cleaning step.")
    name: str | None = Field(None, description="Dataset name of the result (default: the input's name).")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of the step (`threshold` for dedup-near, `min_tokens`/`max_tokens` for "
        "filter-length).",
    )


class DataTransform(StageKind):
    kind = "data.transform"
    params = TransformParams
    outputs = ("dataset",)
    summary = "Apply one cleaning step to a dataset version."

    def fingerprint(self, ctx: StageContext, params: StageParams) -> dict[str, str]:
        assert isinstance(params, TransformParams)
        return {"input": dataset_digest(ctx, params.input)}

    def run(self, ctx: StageContext, params: StageParams) -> StageOutcome:
        assert isinstance(params, TransformParams)
        detector = None
        if params.step == "scrub-pii":
            from llmops.security.redaction import ScrubRedactor

            detector = ScrubRedactor()
        info, _report = operations.transform(
            datasets(ctx),
            params.input,
            params.step,
            params.name,
            params=dict(params.options),
            detector=detector,
            context=ctx.lineage,
        )
        return StageOutcome({"dataset": info.ref}, message=f"{info.ref}: {info.num_rows} rows")

    def still_valid(self, ctx: StageContext, params: StageParams, outputs: Mapping[str, str]) -> str | None:
        return datasets_exist(ctx, outputs)


STAGE = DataTransform()
