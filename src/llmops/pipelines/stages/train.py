"""`train`: train from a recipe on the pipeline's dataset versions and register the model."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import Field

from llmops.errors import InvalidInput, LLMOpsError
from llmops.pipelines.stages.base import StageContext, StageKind, StageOutcome, StageParams, file_digest
from llmops.pipelines.stages.data_common import dataset_digest
from llmops.registry import Registry
from llmops.security.yaml_input import load_yaml

if TYPE_CHECKING:
    from llmops.train.tracked import TeacherAnswers


class TrainParams(StageParams):
    recipe: str = Field(description="Recipe YAML, relative to the pipeline file.")
    train: str = Field(description="Training dataset reference (replaces the recipe's data.train).")
    validation: str | None = Field(
        None, description="Validation dataset reference (replaces the recipe's data.validation)."
    )
    model_name: str | None = Field(None, description="Registered model name (default: the recipe's name).")
    lr: float | None = Field(None, gt=0, description="Learning rate (recipe optim.lr).")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps (recipe optim.max_steps).")
    batch_size: int | None = Field(None, ge=1, description="Batch size (recipe optim.batch_size).")
    seed: int | None = Field(None, description="Training seed (recipe optim.seed).")
    set: dict[str, Any] = Field(
        default_factory=dict,
        description="Other recipe fields by dotted path, e.g. `{model.num_layers: 2, eval_every: 10}`.",
    )
    threads: int | None = Field(None, ge=1, description="torch threads.")


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise InvalidInput(f"recipe field {dotted!r}: {part!r} is not a mapping", param=f"set.{dotted}")
        node = child
    if isinstance(value, dict) and isinstance(node.get(leaf), dict):
        for key, item in value.items():  # a nested override merges, it does not replace the section
            _set_dotted(node[leaf], str(key), item)
        return
    node[leaf] = value


def recipe_with_params(ctx: StageContext, params: TrainParams) -> dict[str, Any]:
    """The recipe as the stage will run it: the file, then the pipeline's datasets and overrides."""
    path = ctx.path(params.recipe)
    try:
        recipe = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(
            f"stage {ctx.stage!r}: params.recipe: cannot read {path}: {exc}", param="recipe"
        ) from None
    if not isinstance(recipe, dict):
        raise InvalidInput(f"stage {ctx.stage!r}: params.recipe: {path} is not a mapping", param="recipe")
    _set_dotted(recipe, "data.train", params.train)
    recipe.setdefault("data", {}).pop("validation", None)
    if params.validation:
        _set_dotted(recipe, "data.validation", params.validation)
    for field in ("lr", "max_steps", "batch_size", "seed"):
        value = getattr(params, field)
        if value is not None:
            _set_dotted(recipe, f"optim.{field}", value)
    for dotted, value in params.set.items():
        _set_dotted(recipe, dotted, value)
    return recipe


class Train(StageKind):
    kind = "train"
    params = TrainParams
    outputs = ("model", "run")
    summary = "Train from a recipe and register the model with its lineage."

    def fingerprint(self, ctx: StageContext, params: StageParams) -> dict[str, str]:
        assert isinstance(params, TrainParams)
        digests = {"recipe": file_digest(ctx.path(params.recipe)), "train": dataset_digest(ctx, params.train)}
        if params.validation:
            digests["validation"] = dataset_digest(ctx, params.validation)
        return digests

    def run(self, ctx: StageContext, params: StageParams) -> StageOutcome:
        assert isinstance(params, TrainParams)
        from llmops.train.tracked import run_recipe

        folder = ctx.home.settings.resolved_home() / "pipelines" / ctx.pipeline / ctx.stage
        shutil.rmtree(folder, ignore_errors=True)  # leftovers of an interrupted run; the lock is ours
        folder.mkdir(parents=True)
        try:
            with tempfile.TemporaryDirectory(dir=folder) as work:
                recipe_path = Path(work) / Path(params.recipe).name
                recipe_path.write_text(yaml.safe_dump(recipe_with_params(ctx, params), sort_keys=False))
                trained = run_recipe(
                    ctx.home,
                    recipe_path,
                    output_dir=Path(work) / "run",
                    model_name=params.model_name,
                    threads=params.threads,
                    show_progress=False,
                    lineage=ctx.lineage,
                    teacher_answers=self.teacher_answers(params),
                )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        result = trained.result
        message = (
            f"{trained.version.ref}: {result.final_step} steps, "
            f"loss {result.initial_train_loss:.3f} → {result.final_train_loss:.3f}"
        )
        return StageOutcome({"model": trained.version.ref, "run": trained.run_id}, message=message)

    def teacher_answers(self, params: TrainParams) -> TeacherAnswers | None:
        """How a distillation teacher answers prompts (``distill.teacher_data``): the in-process
        engine, as ``llmops train run`` does."""
        threads = params.threads

        def answer(model_dir: Path, prompts: list[str], max_tokens: int) -> list[str]:
            from llmops.engine.config import EngineConfig
            from llmops.engine.offline import complete_prompts

            config = EngineConfig(threads=threads) if threads else None
            return complete_prompts(model_dir, prompts, max_tokens, config=config)

        return answer

    def still_valid(self, ctx: StageContext, params: StageParams, outputs: Mapping[str, str]) -> str | None:
        try:
            Registry.from_home(ctx.home).get(outputs["model"])
        except LLMOpsError as exc:
            return f"model {outputs.get('model')} is gone: {exc.message}"
        return None


STAGE = Train()
