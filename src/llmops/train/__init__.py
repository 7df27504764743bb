"""Training: tokenizers, new models from configs, full fine-tuning, LoRA, checkpoints, torchrun.

Owns: recipes (typed YAML), tokenizer training, model initialisation, tokenisation with loss masks
and packing, the training loop (AdamW, cosine schedule, accumulation, clipping, bf16, early
stopping, divergence checks), atomic exactly-resumable checkpoints, LoRA adapters (peft) and the
multi-process launch (torchrun, DDP).

The core works on local files only: the caller resolves dataset, model and tokenizer references to
paths (``TrainInputs``) and plugs tracking in through a ``TrainingObserver``. One module,
``tracked``, is that caller for the platform: it resolves references through ``data`` and
``registry``, tracks the run and registers the result. Nothing here imports ``serve``, ``gateway``
or anything above them.

Importing it is cheap (no torch); ``train()`` loads the heavy modules when called.
"""

from __future__ import annotations

from pathlib import Path

from llmops.train.messages import (
    NullObserver,
    TrainingFailed,
    TrainingObserver,
    TrainingResult,
    TrainInputs,
    TrainJob,
)
from llmops.train.recipe import Recipe, load_recipe, parse_recipe

__all__ = [
    "NullObserver",
    "Recipe",
    "TrainInputs",
    "TrainJob",
    "TrainingFailed",
    "TrainingObserver",
    "TrainingResult",
    "load_recipe",
    "parse_recipe",
    "train",
]


def train(
    recipe: Recipe,
    inputs: TrainInputs,
    output_dir: str | Path,
    *,
    observer: TrainingObserver | None = None,
    resume: bool = False,
    nproc: int = 1,
    device: str = "auto",
    num_threads: int | None = None,
) -> TrainingResult:
    """Run ``recipe`` (pretrain, finetune or lora) on local inputs and write into ``output_dir``.

    ``resume=True`` continues from the newest checkpoint in ``output_dir`` (or starts if there is
    none); otherwise ``output_dir`` must be empty or absent. ``nproc > 1`` trains with that many
    processes through torchrun; the observer still receives every event in this process.
    Raises ``InvalidInput`` for bad recipes or inputs (before any step) and ``TrainingFailed`` when
    training diverges (no final model is written then).
    """
    job = TrainJob(
        recipe=recipe,
        inputs=inputs,
        output_dir=Path(output_dir),
        resume=resume,
        device=device,
        num_threads=num_threads,
    )
    if nproc > 1:
        from llmops.train.distributed import launch

        return launch(job, nproc, observer)
    from llmops.train.runner import run_job

    return run_job(job, observer=observer)
