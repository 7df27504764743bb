"""`data.synth`: generate a synthetic task's rows as a new dataset version."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from llmops.data import operations
from llmops.pipelines.stages.base import StageContext, StageKind, StageOutcome, StageParams
from llmops.pipelines.stages.data_common import datasets, datasets_exist


class SynthParams(StageParams):
    task: str = Field(description="Synthetic task (llmops.data.synth), e.g. `intent`.")
    name: str = Field(description="Dataset name of the new version.")
    n: int = Field(ge=1, description="Number of rows.")
    seed: int = Field(0, description="Generator seed.")
    domain: str = Field("default", description="Domain of the task (`default` or `shifted`).")


class DataSynth(StageKind):
    kind = "data.synth"
    params = SynthParams
    outputs = ("dataset",)
    summary = "Generate a synthetic dataset version."

    def run(self, ctx: StageContext, params: StageParams) -> StageOutcome:
        assert isinstance(params, SynthParams)
        info = operations.synthesise(
            datasets(ctx),
            params.task,
            params.name,
            n=params.n,
            seed=params.seed,
            domain=params.domain,
            context=ctx.lineage,
        )
        return StageOutcome({"dataset": info.ref}, message=f"{info.ref}: {info.num_rows} rows")

    def still_valid(self, ctx: StageContext, params: StageParams, outputs: Mapping[str, str]) -> str | None:
        return datasets_exist(ctx, outputs)


STAGE = DataSynth()
