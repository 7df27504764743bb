"""`deploy` (also `rollout`): hand the candidate to the rollout controller and report how it ended.

The stage does what `llmops rollout start` does: it reads the deployment's `deployment.yaml`,
opens the deploy target by name (`deploy.targets.open_target`), and `RolloutController.start`
checks the candidate's deploy-time gates and records a `rollout` lifecycle run. Then, by default,
it drives the rollout to its end (`RolloutController.drive`) for at most `timeout_s`:

- promoted: the stage passes; outputs `rollout` (the run id) and `state` (`promoted`);
- refused by the deploy-time gates, rolled back or aborted: the stage fails (its outputs name the
  rollout and the state; the reason is the rollout's last decision);
- still going at the timeout: the stage fails and releases the rollout, which `llmops rollout
  controller` (or the next `pipeline run`, which re-attaches to it) carries on.

With `detach: true` the stage only starts the rollout (gates checked, run recorded) and passes with
state `starting`: a `llmops rollout controller` running where the replicas run drives it. A second
`pipeline run` while a rollout of the same candidate is live re-attaches to it instead of starting
another; a cached stage is used again only while its rollout is promoted or still live.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field

from llmops.deploy.policy import RolloutPolicy
from llmops.deploy.rollout import RolloutController, RolloutEnv
from llmops.deploy.rollout_state import ROLLOUT_MACHINE, RolloutData
from llmops.deploy.spec import DeploymentSpec, load_spec
from llmops.deploy.targets import open_target
from llmops.errors import Conflict, InvalidInput, NotFound
from llmops.pipelines.stages.base import StageContext, StageKind, StageOutcome, StageParams, file_digest
from llmops.registry import Registry
from llmops.store.lifecycle import Lifecycle, LifecycleRecord

WATCH_INTERVAL_S = 1.0  # how often a rollout driven by another controller is re-read


class DeployParams(StageParams):
    spec: str = Field(
        description="The deployment's deployment.yaml (relative to the pipeline file); its `rollout:` "
        "is the policy unless `policy` is given."
    )
    candidate: str = Field(description="Model version to roll out, e.g. `${stages.register.outputs.model}`.")
    deployment: str | None = Field(
        None, description="The deployment's name, checked against the spec's (default: the spec's)."
    )
    policy: RolloutPolicy | None = Field(
        None, description="Shadow, canary steps, analysis thresholds (RolloutPolicy); default the spec's."
    )
    target: str = Field("local", description="Deploy target that starts candidate replicas.")
    detach: bool = Field(
        False,
        description="Only start the rollout (gates checked, run recorded); `llmops rollout "
        "controller` drives it. Default: drive it to its end here.",
    )
    timeout_s: float = Field(
        3600.0, gt=0, description="Longest wait for the rollout to end; then the stage fails and the "
        "rollout is left to `llmops rollout controller`.",
    )  # fmt: skip
    settle_s: float = Field(5.0, ge=0, description="Seconds gateway workers take to apply a split.")
    reason: str | None = Field(None, description="Why, for the audit log (default: the pipeline run).")


class Deploy(StageKind):
    kind = "deploy"
    params = DeployParams
    outputs = ("rollout", "state")
    promotes = True
    summary = "Roll the candidate out on a deployment through the rollout controller; fail on rollback."

    def fingerprint(self, ctx: StageContext, params: StageParams) -> dict[str, str]:
        assert isinstance(params, DeployParams)
        return {
            "spec": file_digest(_spec_path(ctx, params)),
            "candidate": Registry.from_home(ctx.home).get(params.candidate).digest,
        }

    def run(self, ctx: StageContext, params: StageParams) -> StageOutcome:
        assert isinstance(params, DeployParams)
        spec = _spec(ctx, params)
        registry = Registry.from_home(ctx.home)
        target = open_target(params.target, ctx.home)
        controller = RolloutController(RolloutEnv(ctx.home.store, registry, target, settle_s=params.settle_s))
        candidate = registry.get(params.candidate).ref
        record = _attach(controller, spec.name, candidate, ctx)
        if record is None:
            reason = params.reason or f"pipeline {ctx.pipeline} run {ctx.pipeline_run_id} stage {ctx.stage}"
            try:
                record = controller.start(
                    spec, candidate, actor=ctx.home.actor, policy=params.policy, reason=reason
                )
            except NotFound as exc:
                raise NotFound(
                    f"{exc.message}; nothing serves {spec.model} yet, so there is nothing to roll out "
                    "over: make the first release by hand (`llmops models alias set`, then "
                    "`llmops deploy apply`) and let this stage roll out the next ones",
                    param="spec",
                ) from None
            except Conflict as exc:
                if exc.code != "candidate_refused":
                    raise
                return _ended(controller, controller.runs.latest(spec.name), candidate, exc.message)
            ctx.log(f"  rollout {record.id[:12]}: {candidate} on {spec.name}: deploy-time gates passed")
        if params.detach:
            controller.runs.release(record.id, controller.env.holder)
            message = (
                f"rollout {record.id[:12]} of {candidate} on {spec.name} started ({record.state}); "
                "detached: `llmops rollout controller` drives it, "
                f"`llmops rollout status {spec.name}` shows it"
            )
            return StageOutcome({"rollout": record.id, "state": record.state}, message=message)
        return _ended(controller, _wait(controller, record, params.timeout_s), candidate, None)

    def still_valid(self, ctx: StageContext, params: StageParams, outputs: Mapping[str, str]) -> str | None:
        rollout_id = outputs.get("rollout", "")
        try:
            record = Lifecycle(ctx.home.store, ROLLOUT_MACHINE).get(rollout_id)
        except NotFound:
            return f"rollout {rollout_id[:12]} is gone"
        if record.terminal and record.state != "promoted":
            return f"rollout {rollout_id[:12]} ended {record.state} since"
        return None


def _spec_path(ctx: StageContext, params: DeployParams) -> Path:
    return ctx.path(params.spec)


def _spec(ctx: StageContext, params: DeployParams) -> DeploymentSpec:
    spec = load_spec(_spec_path(ctx, params))
    if params.deployment is not None and params.deployment != spec.name:
        raise InvalidInput(
            f"stage {ctx.stage!r}: {params.spec} describes {spec.name!r}, not {params.deployment!r}",
            param="deployment",
        )
    return spec


def _attach(
    controller: RolloutController, deployment: str, candidate: str, ctx: StageContext
) -> LifecycleRecord | None:
    """The live rollout of this candidate on this deployment (a run interrupted before), if any."""
    live = controller.runs.live(deployment)
    if live is None:
        return None
    if RolloutData.from_json(live.data).candidate.ref != candidate:
        return None  # starting ours is refused with the live run named
    ctx.log(f"  rollout {live.id[:12]} of {candidate} on {deployment} is live ({live.state}): attaching")
    return live


def _wait(controller: RolloutController, record: LifecycleRecord, timeout_s: float) -> LifecycleRecord:
    """Drive the rollout to its end; watch it instead while another controller holds its lease."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return controller.drive(record.id, timeout_s=max(deadline - time.monotonic(), 0.0))
        except Conflict as exc:
            if exc.code == "run_ended":
                return controller.runs.get(record.id)
            if exc.code != "lease_held":
                raise
        record = controller.runs.get(record.id)
        if record.terminal or time.monotonic() >= deadline:
            return record
        controller.env.sleep(WATCH_INTERVAL_S)


def _ended(
    controller: RolloutController, record: LifecycleRecord | None, candidate: str, refused: str | None
) -> StageOutcome:
    if record is None:  # refused, but the refusal was not recorded: never expected
        raise Conflict(refused or f"rollout of {candidate} refused", code="candidate_refused")
    outputs = {"rollout": record.id, "state": record.state}
    where = f"rollout {record.id[:12]} of {candidate} on {record.name}"
    if record.state == "promoted":
        return StageOutcome(outputs, message=f"{where}: promoted")
    if not record.terminal:
        message = (
            f"{where} is still {record.state} after the stage's timeout_s; it is left to "
            f"`llmops rollout controller` (the next `pipeline run` attaches to it again)"
        )
        return StageOutcome(outputs, passed=False, message=message)
    history = controller.runs.history(record.id)
    why = refused or next((t.reason for t in reversed(history) if t.reason), None) or "no reason recorded"
    if record.state != "refused":
        decided = next((t for t in reversed(history) if t.to_state in ("rolling_back", "aborting")), None)
        why = decided.reason if decided is not None and decided.reason else why
    return StageOutcome(outputs, passed=False, message=f"{where}: {record.state}: {why}")


class Rollout(Deploy):
    kind = "rollout"


STAGE = Deploy()
ROLLOUT = Rollout()
