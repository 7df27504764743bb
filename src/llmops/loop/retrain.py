"""Retraining a candidate from the champion on the curated dataset (the ``Retrainer`` seam).

``RecipeRetrainer`` takes the loop's recipe, points its base at the champion's exact version and its
training data at the cycle's curated dataset, and runs it through ``train.tracked`` (tracked run,
registered version with lineage to the dataset versions and the base). ``PipelineRetrainer`` runs a
pipeline file's train stage through the pipelines runner instead (``retrain.pipeline``), so the
candidate is a pipeline output with the pipeline's lineage and cache. Tests swap in a fake.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from llmops.errors import LLMOpsError
from llmops.pipelines import Runner, load
from llmops.store.home import Home
from llmops.train.tracked import run_recipe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainRequest:
    cycle_id: str
    champion: str  # exact version, e.g. bot@3
    train_dataset: str  # NAME@VERSION
    candidate_name: str


@dataclass(frozen=True)
class Candidate:
    """A trained candidate: its registry reference, the run that made it, and that run's numbers."""

    ref: str
    run_id: str
    numbers: dict[str, Any] = field(default_factory=dict)


class Retrainer(Protocol):
    def retrain(self, request: RetrainRequest) -> Candidate:
        """Train and register a candidate (raise an ``LLMOpsError`` when it cannot)."""
        ...


def derived_recipe(recipe_path: Path, request: RetrainRequest) -> dict[str, Any]:
    """The loop's recipe with its base set to the champion and its training data to the curated set."""
    raw = yaml.safe_load(recipe_path.read_text(encoding="utf-8"))
    data = dict(raw.get("data") or {})
    data["train"] = request.train_dataset
    return {**raw, "name": request.candidate_name, "model": {"base": request.champion}, "data": data}


class RecipeRetrainer:
    """Fine-tune (full or LoRA, as the recipe says) from the champion, tracked and registered."""

    def __init__(self, home: Home, recipe_path: Path, *, threads: int | None = 1) -> None:
        self.home = home
        self.recipe_path = recipe_path
        self.threads = threads

    def retrain(self, request: RetrainRequest) -> Candidate:
        output = self.home.settings.resolved_home() / "training" / f"loop-{request.cycle_id}"
        with tempfile.TemporaryDirectory(prefix="llmops-loop-") as tmp:
            path = Path(tmp) / "recipe.yaml"
            path.write_text(yaml.safe_dump(derived_recipe(self.recipe_path, request)), encoding="utf-8")
            trained = run_recipe(
                self.home,
                path,
                output_dir=output,
                model_name=request.candidate_name,
                resume=output.exists(),  # a cycle killed mid-training continues from its checkpoint
                threads=self.threads,
                show_progress=False,
            )
        result = trained.result
        numbers = {
            "initial_train_loss": result.initial_train_loss,
            "final_train_loss": result.final_train_loss,
            "best_val_loss": result.best_val_loss,
            "steps": result.final_step,
        }
        return Candidate(trained.version.ref, trained.run_id, numbers)


def pipeline_overrides(request: RetrainRequest) -> list[str]:
    """The ``-p`` overrides a retraining pipeline receives for one cycle."""
    return [f"train={request.train_dataset}", f"base={request.champion}", f"model={request.candidate_name}"]


class PipelineRetrainer:
    """Retrain through the pipelines runner: the loop's pipeline file up to its train stage, with the
    params ``train``, ``base`` and ``model`` set for the cycle. The stage is cached like any pipeline
    stage (by kind, parameters and input digests), so a cycle resumed after its driver died reuses the
    candidate a finished run registered instead of training it again."""

    def __init__(self, home: Home, pipeline_path: Path, stage: str) -> None:
        self.home = home
        self.pipeline_path = pipeline_path
        self.stage = stage

    def retrain(self, request: RetrainRequest) -> Candidate:
        pipeline = load(self.pipeline_path, pipeline_overrides(request))
        reports = self.home.settings.resolved_home() / "loop" / f"cycle-{request.cycle_id}"
        runner = Runner(self.home, log=lambda line: log.info("retrain: %s", line), reports_dir=reports)
        result = runner.run(pipeline, targets=[self.stage])
        report = next((r for r in result.stages if r.name == self.stage), None)
        if report is None or report.status not in ("ran", "skipped") or "model" not in report.outputs:
            why = "not run" if report is None else f"{report.status}: {report.message or report.reason}"
            raise LLMOpsError(
                f"pipeline {pipeline.name} (run {result.run_id}) did not train a candidate: stage "
                f"{self.stage} {why}",
                code="retrain_failed",
            )
        numbers = {"pipeline": pipeline.name, "pipeline_run": result.run_id, "stage": report.status,
                   "message": report.message}  # fmt: skip
        return Candidate(report.outputs["model"], report.outputs.get("run") or report.run_id or "", numbers)
