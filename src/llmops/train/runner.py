"""One training job end to end, in this process: tokenizer, model, examples, loop, final save.

Output folder layout::

    output_dir/
      tokenizer/             the trained tokenizer (tokenizer.source: train), reused on resume
      checkpoints/step-N/    see checkpoint.py
      model/                 final model + tokenizer + input_format.json (pretrain, finetune)
      adapter/               final LoRA adapter + tokenizer + input_format.json (lora)

The final model is written only after the loop succeeds, into a temporary folder renamed into
place, so a failed or killed run never leaves a model that looks finished.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from llmops.errors import InvalidInput
from llmops.train.batching import Example, encode_rows, pack_examples
from llmops.train.checkpoint import latest_checkpoint
from llmops.train.collectives import DistContext, barrier, pick_device
from llmops.train.distill import DistillTrainer, check_same_tokenizer, check_same_vocabulary
from llmops.train.input_format import InputFormat, format_for_schema, write_input_format
from llmops.train.loop import LoopOutcome, Trainer
from llmops.train.lora import apply_lora, save_adapter
from llmops.train.messages import TrainingObserver, TrainingResult, TrainJob
from llmops.train.modeling import build_model, count_parameters, load_model, model_config, save_model
from llmops.train.recipe import BaseModelSpec, NewModelSpec, Recipe
from llmops.train.rng import seed_process
from llmops.train.rows import Row, read_rows, row_texts
from llmops.train.tokenizer import load_tokenizer, train_tokenizer

MODEL_DIR, ADAPTER_DIR, TOKENIZER_DIR, CHECKPOINT_DIR = "model", "adapter", "tokenizer", "checkpoints"


def run_job(
    job: TrainJob, *, ctx: DistContext | None = None, observer: TrainingObserver | None = None
) -> TrainingResult:
    """Train as ``job`` says; with several processes every rank calls this, rank 0 writes."""
    ctx = ctx or DistContext()
    _check_inputs(job, ctx)
    with _torch_threads(job.num_threads):
        if job.recipe.kind == "encoder":
            from llmops.train.encoder_runner import run_encoder_job

            return run_encoder_job(job, ctx, observer)
        return _train(job, ctx, observer)


@contextlib.contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """Use ``count`` intra-op threads for the run, then give the caller its setting back."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(job: TrainJob, ctx: DistContext, observer: TrainingObserver | None) -> TrainingResult:
    recipe = job.recipe
    device = pick_device(job.device, ctx)
    barrier(ctx)  # every rank checked the output folder before rank 0 writes into it
    train_rows = read_rows(job.inputs.train_path, recipe.data.row_schema)
    val_path = job.inputs.validation_path
    val_rows = read_rows(val_path, recipe.data.row_schema) if val_path is not None else []
    tokenizer = _prepare_tokenizer(job, train_rows, ctx)
    teacher = _prepare_teacher(job, tokenizer)
    model = _prepare_model(recipe, job, tokenizer, teacher)
    counts = count_parameters(model)
    seed_process(recipe.optim.seed, ctx)
    extra: dict[str, Any] = {}
    trainer_cls: type[Trainer] = Trainer
    if teacher is not None:
        assert recipe.distill is not None  # the recipe validator requires it for kind distill
        trainer_cls, extra = DistillTrainer, {"teacher": teacher, "spec": recipe.distill}
    trainer = trainer_cls(
        model,
        _examples(train_rows, tokenizer, recipe),
        _examples(val_rows, tokenizer, recipe) if val_rows else [],
        recipe,
        pad_id=int(tokenizer.pad_token_id),
        checkpoint_dir=job.output_dir / CHECKPOINT_DIR,
        observer=observer,
        ctx=ctx,
        device=device,
        **extra,
    )
    latest = latest_checkpoint(job.output_dir / CHECKPOINT_DIR) if job.resume else None
    if latest is not None:
        trainer.resume(latest)
    outcome = trainer.run()
    model_dir = job.output_dir / (ADAPTER_DIR if recipe.kind == "lora" else MODEL_DIR)
    if ctx.is_main:
        fmt = format_for_schema(recipe.data.row_schema, tokenizer)
        _save_final(trainer.model, tokenizer, fmt, model_dir, lora=recipe.kind == "lora")
    barrier(ctx)
    return result_of(job, outcome, model_dir, counts.total, counts.trainable, ctx)


def _check_inputs(job: TrainJob, ctx: DistContext) -> None:
    """Fail before any work on inputs that cannot make a run."""
    recipe, inputs = job.recipe, job.inputs
    if isinstance(recipe.model, BaseModelSpec) and inputs.base_model_dir is None:
        raise InvalidInput(
            f"kind {recipe.kind} needs the base model's local directory", param="base_model_dir"
        )
    if recipe.kind == "distill" and inputs.teacher_model_dir is None:
        raise InvalidInput("kind distill needs the teacher's local directory", param="teacher_model_dir")
    if recipe.tokenizer.source == "ref" and inputs.tokenizer_dir is None:
        raise InvalidInput(
            "tokenizer.source 'ref' needs the tokenizer's local directory", param="tokenizer_dir"
        )
    if recipe.data.validation is not None and inputs.validation_path is None:
        raise InvalidInput(
            "the recipe names validation data but no validation file was given", param="validation"
        )
    if recipe.optim.batch_size % ctx.world_size:
        raise InvalidInput(
            f"optim.batch_size {recipe.optim.batch_size} must be a multiple of the process count "
            f"{ctx.world_size}",
            param="optim.batch_size",
        )
    out = job.output_dir
    if not job.resume and out.is_dir() and any(out.iterdir()):
        raise InvalidInput(
            f"output folder {out.name} is not empty: resume it or choose an empty folder", param="output_dir"
        )


def _prepare_tokenizer(job: TrainJob, train_rows: list[Row], ctx: DistContext) -> PreTrainedTokenizerBase:
    spec, inputs = job.recipe.tokenizer, job.inputs
    if spec.source == "base":
        assert inputs.base_model_dir is not None  # checked in _check_inputs
        return load_tokenizer(inputs.base_model_dir)
    if spec.source == "ref":
        assert inputs.tokenizer_dir is not None
        return load_tokenizer(inputs.tokenizer_dir)
    if spec.source == "teacher":
        assert inputs.teacher_model_dir is not None  # checked in _check_inputs
        return load_tokenizer(inputs.teacher_model_dir)
    folder = job.output_dir / TOKENIZER_DIR
    if ctx.is_main and not (job.resume and folder.is_dir()):
        model = job.recipe.model
        assert isinstance(model, NewModelSpec)  # a trained tokenizer means kind pretrain
        train_tokenizer(
            row_texts(train_rows),
            folder,
            vocab_size=spec.vocab_size,
            min_frequency=spec.min_frequency,
            model_max_length=model.max_position_embeddings,
        )
    barrier(ctx)  # the other ranks load what rank 0 trained, so all share one vocabulary
    return load_tokenizer(folder)


def _prepare_teacher(job: TrainJob, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel | None:
    """The frozen teacher of kind distill, after checking that it shares the student's tokenizer."""
    teacher_dir = job.inputs.teacher_model_dir
    if job.recipe.kind != "distill" or teacher_dir is None:
        return None
    check_same_tokenizer(tokenizer, load_tokenizer(teacher_dir))
    return load_model(teacher_dir, param="distill.teacher")


def _prepare_model(
    recipe: Recipe, job: TrainJob, tokenizer: PreTrainedTokenizerBase, teacher: PreTrainedModel | None = None
) -> torch.nn.Module:
    if isinstance(recipe.model, NewModelSpec):
        new_config = model_config(recipe.model, tokenizer)
        if teacher is not None:
            new_config.vocab_size = int(teacher.config.vocab_size)  # logits over the teacher's ids
        model = build_model(new_config, seed=recipe.optim.seed)
    else:
        assert job.inputs.base_model_dir is not None
        model = load_model(job.inputs.base_model_dir)
        if teacher is not None:
            check_same_vocabulary(int(model.config.vocab_size), int(teacher.config.vocab_size))
    config: PretrainedConfig = model.config
    if int(config.vocab_size) < len(tokenizer):
        raise InvalidInput("the base model's vocabulary is smaller than its tokenizer's", param="model.base")
    limit = int(config.max_position_embeddings)
    if recipe.max_seq_len > limit:
        raise InvalidInput(
            f"max_seq_len {recipe.max_seq_len} exceeds the model's {limit}", param="max_seq_len"
        )
    if recipe.kind == "lora":
        assert recipe.lora is not None  # the recipe validator requires it for kind lora
        return apply_lora(model, recipe.lora, seed=recipe.optim.seed)
    return model


def _examples(rows: list[Row], tokenizer: PreTrainedTokenizerBase, recipe: Recipe) -> list[Example]:
    examples, _ = encode_rows(rows, tokenizer, recipe.max_seq_len)
    return pack_examples(examples, recipe.max_seq_len) if recipe.packing else examples


def _save_final(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, fmt: InputFormat, target: Path, *, lora: bool
) -> None:
    """Write into a temporary sibling, then rename: the final folder appears whole or not at all.

    The folder records its input format, so evaluation and serving encode prompts as training did.
    """

    def write(tmp: Path) -> None:
        if lora:
            assert isinstance(model, PeftModel)
            save_adapter(model, tmp)
        else:
            assert isinstance(model, PreTrainedModel)
            save_model(model, tmp)
        tokenizer.save_pretrained(str(tmp))
        write_input_format(fmt, tmp)

    finish_dir(target, write)


def finish_dir(target: Path, write: Callable[[Path], None]) -> None:
    """``write`` into a temporary sibling of ``target``, then rename it into place."""
    tmp = target.with_name(f".tmp-{target.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


def result_of(
    job: TrainJob, outcome: LoopOutcome, model_dir: Path, total: int, trainable: int, ctx: DistContext
) -> TrainingResult:
    state = outcome.state
    return TrainingResult(
        kind=job.recipe.kind,
        output_dir=job.output_dir,
        model_dir=model_dir,
        final_step=state.step,
        max_steps=job.recipe.optim.max_steps,
        stopped_early=state.stopped_early,
        resumed_from_step=outcome.resumed_from_step,
        train_losses=state.train_losses,
        val_losses=state.val_losses,
        best_val_loss=state.best_val_loss,
        best_step=state.best_step,
        tokens_seen=state.tokens_seen,
        tokens_per_s=outcome.tokens_per_s,
        wall_s=outcome.wall_s,
        total_params=total,
        trainable_params=trainable,
        world_size=ctx.world_size,
    )
