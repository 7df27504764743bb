"""Retraining a candidate from the champion on the curated dataset (the ``Retrainer`` seam).

``RecipeRetrainer`` takes the loop's recipe, points its base at the champion's exact version and its
training data at the cycle's curated dataset, and runs it through ``train.tracked`` (tracked run,
registered version with lineage to the dataset versions and the base). Tests swap in a fake.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from llmops.store.home import Home
from llmops.train.tracked import run_recipe


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
