"""`quantize` and `distill`: declared so pipelines can name them; refused until they are built."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from llmops.pipelines.stages.base import StageContext, StageKind, StageOutcome, StageParams


class OptimiseParams(StageParams):
    model: str = Field(description="Model version to optimise.")
    name: str | None = Field(None, description="Registered name of the result.")
    options: dict[str, Any] = Field(default_factory=dict, description="Options of the method.")


class Quantize(StageKind):
    kind = "quantize"
    params = OptimiseParams
    outputs = ("model",)
    summary = "Quantise a model version (not available in this version)."

    def available(self) -> str | None:
        return f"stage kind {self.kind!r} is not available in this version of llmops"

    def run(self, ctx: StageContext, params: StageParams) -> StageOutcome:
        raise NotImplementedError(self.available())


class Distill(Quantize):
    kind = "distill"
    summary = "Distil a model version into a smaller one (not available in this version)."


QUANTIZE = Quantize()
DISTILL = Distill()
