"""`deploy` (also `rollout`): hand the candidate to the rollout controller under a policy.

The controller lives in ``llmops.deploy.rollout``; this stage calls its ``start_rollout`` entry point.
An installation without it refuses the stage before anything runs, so a pipeline never trains and
evaluates only to find at the end that it cannot ship.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

from pydantic import Field

from llmops.deploy.policy import RolloutPolicy
from llmops.pipelines.stages.base import StageContext, StageKind, StageOutcome, StageParams

ROLLOUT_MODULE = "llmops.deploy.rollout"
ENTRY_POINT = "start_rollout"


class DeployParams(StageParams):
    deployment: str = Field(description="The deployment (gateway route) to roll the candidate out on.")
    candidate: str = Field(description="Model version to roll out, e.g. `${stages.train.outputs.model}`.")
    policy: RolloutPolicy = Field(
        default_factory=RolloutPolicy,
        description="Shadow, canary steps, analysis thresholds (RolloutPolicy).",
    )


def rollout_entry() -> Callable[..., Any] | None:
    """The rollout controller's entry point, when this installation has one."""
    if importlib.util.find_spec(ROLLOUT_MODULE) is None:
        return None
    entry = getattr(importlib.import_module(ROLLOUT_MODULE), ENTRY_POINT, None)
    return entry if callable(entry) else None


class Deploy(StageKind):
    kind = "deploy"
    params = DeployParams
    outputs = ("rollout",)
    promotes = True
    summary = "Roll the candidate out on a deployment through the rollout controller."

    def available(self) -> str | None:
        if rollout_entry() is None:
            return (
                f"the {self.kind} stage needs the rollout controller ({ROLLOUT_MODULE}.{ENTRY_POINT}), "
                "which this version does not have yet; run the stages before it with --stage, "
                "or remove this stage"
            )
        return None

    def run(self, ctx: StageContext, params: StageParams) -> StageOutcome:
        assert isinstance(params, DeployParams)
        entry = rollout_entry()
        assert entry is not None  # checked by available() before the pipeline started
        reason = f"pipeline {ctx.pipeline} run {ctx.pipeline_run_id} stage {ctx.stage}"
        rollout = entry(ctx.home, params.deployment, params.candidate, params.policy, reason=reason)
        rollout_id = str(getattr(rollout, "id", rollout))
        return StageOutcome({"rollout": rollout_id}, message=f"rollout {rollout_id} of {params.candidate}")


class Rollout(Deploy):
    kind = "rollout"


STAGE = Deploy()
ROLLOUT = Rollout()
