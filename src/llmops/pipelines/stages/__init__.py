"""The stage kinds a pipeline file can name, one module each."""

from __future__ import annotations

from llmops.pipelines.stages import (
    alias,
    command,
    data_ingest,
    data_split,
    data_synth,
    data_transform,
    deploy,
    eval,
    gate,
    optimise,
    train,
)
from llmops.pipelines.stages.base import StageContext, StageKind, StageOutcome, StageParams

KINDS: dict[str, StageKind] = {
    stage.kind: stage
    for stage in (
        data_ingest.STAGE,
        data_transform.STAGE,
        data_split.STAGE,
        data_synth.STAGE,
        train.STAGE,
        eval.STAGE,
        gate.STAGE,
        alias.STAGE,
        alias.REGISTER,
        deploy.STAGE,
        deploy.ROLLOUT,
        optimise.QUANTIZE,
        optimise.DISTILL,
        command.STAGE,
    )
}

__all__ = ["KINDS", "StageContext", "StageKind", "StageOutcome", "StageParams"]
