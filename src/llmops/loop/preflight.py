"""Start-up checks of a ``LoopConfig`` against the store: every name it uses must exist.

An unknown deployment, model, dataset, suite metric, online-evaluation metric, recipe or label file
is refused here, before any trigger is checked, with the field path and a fix; a loop never finds
out three days later that it was watching nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from llmops.data.versions import DatasetStore
from llmops.deploy.spec import load_spec
from llmops.errors import InvalidInput, LLMOpsError, NotFound, did_you_mean
from llmops.evals.suite import Suite, load_suite
from llmops.loop.config import HumanFile, LoopConfig, QualityDropTrigger
from llmops.loop.retrain import RetrainRequest, pipeline_overrides
from llmops.pipelines import load as load_pipeline
from llmops.registry import ModelVersionInfo, Registry
from llmops.store.home import Home
from llmops.store.schema import (
    DriftReference,
    GatewayDeployment,
    GatewayRequest,
    LifecycleRun,
    OnlineEvalResult,
)
from llmops.train.recipe import BaseModelSpec, Recipe, load_recipe

# Online-evaluation metrics a deployment scores before any result is stored (the default metric).
DEFAULT_ONLINE_METRICS = frozenset({"refusal"})


@dataclass(frozen=True)
class Checked:
    """What start-up resolved: the champion, the suite and the recipe the cycles will use."""

    champion: ModelVersionInfo
    suite: Suite
    recipe: Recipe


def _refuse(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"loop config: {field}: {message}", param=field)


def known_deployments(home: Home) -> set[str]:
    """Deployments the store knows: admin-API deployments, logged traffic, drift references, rollouts."""
    with home.store.read() as session:
        names: set[str | None] = set(session.execute(select(GatewayDeployment.name)).scalars())
        names |= set(session.execute(select(GatewayRequest.deployment).distinct()).scalars())
        names |= set(session.execute(select(DriftReference.deployment).distinct()).scalars())
        rollouts = select(LifecycleRun.name).distinct().where(LifecycleRun.kind == "rollout")
        names |= set(session.execute(rollouts).scalars())
    return {name for name in names if name}


def known_online_metrics(home: Home) -> set[str]:
    with home.store.read() as session:
        stored = set(session.execute(select(OnlineEvalResult.metric).distinct()).scalars())
    return stored | DEFAULT_ONLINE_METRICS


def check_config(home: Home, config: LoopConfig) -> Checked:
    """Resolve every reference of ``config``; the first unknown one raises naming its field."""
    deployments = known_deployments(home)
    if config.deployment not in deployments:
        raise _refuse(
            "deployment",
            f"no deployment {config.deployment!r} is known to the store (no admin-API deployment, "
            "logged request, drift reference or rollout names it)."
            + did_you_mean(config.deployment, deployments),
        )
    champion = _champion(home, config)
    _check_triggers(home, config)
    datasets = DatasetStore.from_home(home)
    if config.curation.replay is not None:
        _dataset(datasets, config.curation.replay.dataset, "curation.replay.dataset")
    for index, label in enumerate(config.curation.labels):
        if isinstance(label, HumanFile) and not label.path.is_file():
            raise _refuse(f"curation.labels[{index}].path", f"file {label.path} does not exist")
    _deployment_spec(config)
    suite = _suite(config)
    _dataset(datasets, suite.dataset, "gate.suite")
    return Checked(champion, suite, _recipe(config))


def _champion(home: Home, config: LoopConfig) -> ModelVersionInfo:
    registry = Registry.from_home(home)
    try:
        return registry.get(config.champion_ref)
    except NotFound:
        names = [model.name for model in registry.list_models()]
        raise _refuse(
            "model",
            f"no model version {config.champion_ref!r} (model {config.model!r} with alias "
            f"{config.rollout.alias!r} from rollout.alias).{did_you_mean(config.model, names)}",
        ) from None


def _check_triggers(home: Home, config: LoopConfig) -> None:
    metrics: set[str] | None = None
    for index, trigger in enumerate(config.triggers):
        if isinstance(trigger, QualityDropTrigger) and trigger.metric is not None:
            metrics = metrics if metrics is not None else known_online_metrics(home)
            if trigger.metric not in metrics:
                raise _refuse(
                    f"triggers[{index}].metric",
                    f"no online-evaluation metric {trigger.metric!r} has been scored; known: "
                    f"{', '.join(sorted(metrics))}.{did_you_mean(trigger.metric, metrics)}",
                )


def _deployment_spec(config: LoopConfig) -> None:
    if config.deployment_spec is None:
        return
    try:
        spec = load_spec(config.deployment_spec)
    except LLMOpsError as exc:
        raise _refuse("deployment_spec", exc.message) from None
    if spec.name != config.deployment:
        raise _refuse(
            "deployment_spec", f"{config.deployment_spec} describes {spec.name!r}, not {config.deployment!r}"
        )


def _dataset(datasets: DatasetStore, ref: str, field: str) -> None:
    try:
        datasets.get(ref)
    except LLMOpsError as exc:
        raise _refuse(field, f"dataset {ref!r}: {exc.message}") from None


def _suite(config: LoopConfig) -> Suite:
    try:
        suite = load_suite(config.gate.suite)
    except LLMOpsError as exc:
        raise _refuse("gate.suite", exc.message) from None
    ids = [spec.metric_id for spec in suite.metrics]
    if config.gate.metric not in ids:
        raise _refuse(
            "gate.metric",
            f"suite {suite.name!r} computes no metric {config.gate.metric!r}; it has: {', '.join(ids)}."
            f"{did_you_mean(config.gate.metric, ids)}",
        )
    return suite


def _recipe(config: LoopConfig) -> Recipe:
    try:
        recipe = load_recipe(config.retrain.recipe)
    except LLMOpsError as exc:
        raise _refuse("retrain.recipe", exc.message) from None
    wanted = "lora" if config.retrain.method == "lora" else "finetune"
    if recipe.kind != wanted:
        raise _refuse(
            "retrain.method",
            f"method {config.retrain.method!r} needs a recipe of kind {wanted!r}, but "
            f"{config.retrain.recipe} is {recipe.kind!r}",
        )
    if not isinstance(recipe.model, BaseModelSpec):
        raise _refuse("retrain.recipe", "the recipe must fine-tune a base model (model.base)")
    if config.retrain.pipeline is not None:
        _retrain_pipeline(config)
    return recipe


def _retrain_pipeline(config: LoopConfig) -> None:
    """The pipeline loads with the cycle's overrides and has the named train stage."""
    assert config.retrain.pipeline is not None
    probe = RetrainRequest("preflight", config.champion_ref, "dataset@1", config.model)
    try:
        pipeline = load_pipeline(config.retrain.pipeline, pipeline_overrides(probe))
    except LLMOpsError as exc:
        raise _refuse("retrain.pipeline", exc.message) from None
    stage = pipeline.stages.get(config.retrain.stage)
    if stage is None or stage.kind.kind != "train":
        raise _refuse(
            "retrain.stage",
            f"{config.retrain.pipeline} has no train stage {config.retrain.stage!r}; stages: "
            f"{', '.join(pipeline.order)}",
        )
