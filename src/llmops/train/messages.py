"""Typed messages across the train package's boundary: inputs, the result, the observer, the failure.

The caller (CLI, pipelines, the maintenance loop) resolves references to local paths and hands them
in as ``TrainInputs``; it learns about progress through a ``TrainingObserver`` (tracking plugs in
there) and gets a ``TrainingResult`` back. Nothing here imports torch, so the messages are cheap to
import and cross process boundaries as JSON (the distributed launcher relies on that).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from llmops.errors import LLMOpsError
from llmops.train.recipe import Recipe


class TrainingFailed(LLMOpsError):
    """Training diverged or crashed; the message names the step. No final model was written."""

    status_code = 500
    error_type = "training_failed"

    def __init__(self, message: str, *, step: int | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.step = step


class TrainInputs(BaseModel):
    """Local files behind a recipe's references, resolved by the caller."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train_path: Path = Field(description="JSONL file of training rows in the recipe's schema.")
    validation_path: Path | None = Field(default=None, description="JSONL file of validation rows.")
    base_model_dir: Path | None = Field(default=None, description="Base model directory (finetune, lora).")
    tokenizer_dir: Path | None = Field(
        default=None, description="Tokenizer directory (tokenizer.source: ref)."
    )
    teacher_model_dir: Path | None = Field(
        default=None, description="Teacher model directory (kind distill)."
    )


class TrainJob(BaseModel):
    """Everything one run needs, in one message: what the launcher hands to every worker process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recipe: Recipe = Field(description="The validated recipe.")
    inputs: TrainInputs = Field(description="Local files behind the recipe's references.")
    output_dir: Path = Field(description="Folder for checkpoints and the final model or adapter.")
    resume: bool = Field(default=False, description="Continue from the newest checkpoint in output_dir.")
    device: str = Field(default="auto", description="auto, cpu or cuda.")
    num_threads: int | None = Field(default=None, ge=1, description="torch intra-op threads per process.")


class TrainingResult(BaseModel):
    """What a finished run produced and how it went."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["pretrain", "finetune", "lora", "distill", "encoder"] = Field(
        description="The recipe's kind."
    )
    output_dir: Path = Field(description="Folder of everything the run wrote.")
    model_dir: Path = Field(description="The final model (pretrain, finetune) or adapter (lora) directory.")
    final_step: int = Field(description="Last optimiser step taken.")
    max_steps: int = Field(description="Steps the recipe asked for.")
    stopped_early: bool = Field(description="Early stopping ended the run before max_steps.")
    resumed_from_step: int | None = Field(description="Checkpoint step this run resumed from, if any.")
    train_losses: list[float] = Field(description="Token-mean train loss of each step, step 1 first.")
    val_losses: list[tuple[int, float]] = Field(description="(step, validation loss) of each evaluation.")
    best_val_loss: float | None = Field(description="Lowest validation loss seen.")
    best_step: int | None = Field(description="Step of the lowest validation loss.")
    tokens_seen: int = Field(description="Non-padding tokens processed over the whole run.")
    tokens_per_s: float = Field(description="Training throughput of this session (all processes).")
    wall_s: float = Field(description="Seconds this session spent in the training loop.")
    total_params: int = Field(description="Parameters of the model.")
    trainable_params: int = Field(description="Parameters the optimiser updated.")
    world_size: int = Field(description="Processes that trained.")

    @property
    def initial_train_loss(self) -> float:
        return self.train_losses[0]

    @property
    def final_train_loss(self) -> float:
        return self.train_losses[-1]


class TrainingObserver(Protocol):
    """Hooks the training loop calls on the main process only; tracking implements these.

    ``metrics`` values are plain floats (loss, lr, grad_norm, tokens_per_s, ...). A hook that
    raises stops training with that exception (the last checkpoint remains usable for resume).
    """

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def on_eval(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def on_checkpoint(self, step: int, path: Path) -> None: ...


class NullObserver:
    """The observer used when the caller gives none."""

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        return None

    def on_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        return None

    def on_checkpoint(self, step: int, path: Path) -> None:
        return None


class ObserverGroup:
    """Hands each event to several observers in turn (tracking and a progress display)."""

    def __init__(self, *observers: TrainingObserver) -> None:
        self._observers = observers

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        for observer in self._observers:
            observer.on_step(step, metrics)

    def on_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        for observer in self._observers:
            observer.on_eval(step, metrics)

    def on_checkpoint(self, step: int, path: Path) -> None:
        for observer in self._observers:
            observer.on_checkpoint(step, path)
