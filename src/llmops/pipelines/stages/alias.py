"""`alias` (also `register`): point a registry alias at the pipeline's model version, audited.

The model version was registered by the stage that made it (``train``); this stage makes it the
version an alias names (``staging``, ``production``). It moves what serves users, so a pipeline with
gates refuses an alias stage that does not come after one.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from llmops.errors import LLMOpsError
from llmops.pipelines.stages.base import StageContext, StageKind, StageOutcome, StageParams
from llmops.registry import Registry


class AliasParams(StageParams):
    model: str = Field(description="Model version to point at, e.g. `${stages.train.outputs.model}`.")
    alias: str = Field(description="The alias to move, e.g. `production`.")
    reason: str | None = Field(None, description="Why, for the audit log (default: the pipeline run).")


class Alias(StageKind):
    kind = "alias"
    params = AliasParams
    outputs = ("model",)
    promotes = True
    summary = "Point a registry alias at a model version (audited)."

    def fingerprint(self, ctx: StageContext, params: StageParams) -> dict[str, str]:
        assert isinstance(params, AliasParams)
        return {"model": Registry.from_home(ctx.home).get(params.model).digest}

    def run(self, ctx: StageContext, params: StageParams) -> StageOutcome:
        assert isinstance(params, AliasParams)
        registry = Registry.from_home(ctx.home)
        version = registry.get(params.model)
        reason = params.reason or f"pipeline {ctx.pipeline} run {ctx.pipeline_run_id} stage {ctx.stage}"
        move = registry.set_alias(version.name, params.alias, version.version, reason=reason)
        ref = f"{version.name}@{params.alias}"
        before = f"from version {move.before}" if move.before is not None else "new alias"
        return StageOutcome({"model": version.ref}, message=f"{ref} → version {version.version} ({before})")

    def still_valid(self, ctx: StageContext, params: StageParams, outputs: Mapping[str, str]) -> str | None:
        assert isinstance(params, AliasParams)
        registry = Registry.from_home(ctx.home)
        wanted = outputs.get("model", "")
        try:
            current = registry.get(f"{registry.get(wanted).name}@{params.alias}").ref
        except LLMOpsError as exc:
            return f"alias {params.alias} no longer names {wanted}: {exc.message}"
        return None if current == wanted else f"alias {params.alias} was moved to {current} since"


class Register(Alias):
    kind = "register"


STAGE = Alias()
REGISTER = Register()
