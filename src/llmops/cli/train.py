"""`llmops train run`: train from a recipe, track the run and register the result."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import typer

from llmops.cli.context import console, home_of

app = typer.Typer(
    help="Training: tokenizers, pretraining, fine-tuning, LoRA, distillation.", no_args_is_help=True
)


@app.command("run")
def run(
    ctx: typer.Context,
    recipe: Path = typer.Argument(..., exists=True, dir_okay=False, help="Recipe YAML file."),
    name: str | None = typer.Option(
        None, "--name", help="Registered model name (default: the recipe's name)."
    ),
    output: Path | None = typer.Option(None, help="Run folder (default: HOME/training/NAME)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the newest checkpoint in the run folder."
    ),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Processes (torchrun, DDP)."),
    threads: int | None = typer.Option(None, min=1, help="torch threads per process."),
) -> None:
    """Train RECIPE; on success register the model (or adapter) with its lineage.

    kind distill trains a student on a teacher's softened logits; with distill.teacher_data the
    teacher first answers the training prompts through the engine (stored as a dataset version).
    Progress (step, loss, tokens/s, time left) is a bar on a terminal and a line every few steps
    or seconds otherwise.
    """
    from llmops.train import load_recipe
    from llmops.train.progress import ProgressReport
    from llmops.train.tracked import run_recipe

    home = home_of(ctx)
    with ProgressReport(load_recipe(recipe).optim.max_steps, console) as progress:
        trained = run_recipe(
            home,
            recipe,
            output_dir=output,
            model_name=name,
            resume=resume,
            nproc=nproc,
            threads=threads,
            progress=progress,
            teacher_answers=partial(_teacher_answers, threads=threads),
        )
    result = trained.result
    losses = f"loss {result.initial_train_loss:.3f} → {result.final_train_loss:.3f}"
    best = f", best validation loss {result.best_val_loss:.3f}" if result.best_val_loss is not None else ""
    console.print(f"trained {result.final_step} steps: {losses}{best}, {result.tokens_per_s:,.0f} tokens/s")
    console.print(f"registered {trained.version.ref} ({trained.version.format}) from run {trained.run_id}")


def _teacher_answers(
    model_dir: Path, prompts: list[str], max_tokens: int, *, threads: int | None
) -> list[str]:
    """A distillation teacher's greedy answers, from the in-process engine."""
    from llmops.engine.config import EngineConfig
    from llmops.engine.offline import complete_prompts

    console.print(f"the teacher answers {len(prompts)} prompts")
    return complete_prompts(
        model_dir, prompts, max_tokens, config=EngineConfig(threads=threads) if threads else None
    )
