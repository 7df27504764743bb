"""One encoder training job (``kind: encoder``): examples, the loss, and the final save.

It runs in the same training loop as every other kind (checkpoints, exact resume, early stopping,
tracking, torchrun); only the examples and the loss differ:

- ``classification``: an example is ``[CLS] text [SEP]`` with its class id at ``labels[1]`` (one
  target per example, so the loop's per-target mean is the per-example mean); the loss is the
  cross-entropy of the classification head.
- ``embedding``: masked-language modelling with a fixed (seeded) mask per text, as BERT's static
  masking: of the chosen positions 80% become ``[MASK]``, 10% a random token, 10% stay; ``labels``
  hold the original token at each chosen position (never position 0, the ``[CLS]``).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from llmops.errors import InvalidInput
from llmops.train.batching import IGNORE_INDEX, Batch, Example
from llmops.train.collectives import DistContext, barrier, pick_device
from llmops.train.encoder import (
    add_encoder_tokens,
    build_encoder,
    encode_text,
    encoder_config,
    load_encoder,
)
from llmops.train.loop import LoopOutcome, Trainer
from llmops.train.messages import TrainingObserver, TrainingResult, TrainJob
from llmops.train.modeling import count_parameters, save_model
from llmops.train.recipe import EncoderSpec, NewModelSpec, Recipe
from llmops.train.rng import seed_process
from llmops.train.rows import PromptCompletionRow, Row, TextRow, read_rows
from llmops.train.tokenizer import load_tokenizer, train_tokenizer


def run_encoder_job(job: TrainJob, ctx: DistContext, observer: TrainingObserver | None) -> TrainingResult:
    """Train the encoder ``job`` describes; rank 0 writes the model folder."""
    from llmops.train.runner import CHECKPOINT_DIR, MODEL_DIR, TOKENIZER_DIR, finish_dir, result_of

    recipe, spec = job.recipe, _spec(job.recipe)
    device = pick_device(job.device, ctx)
    barrier(ctx)
    train_rows = read_rows(job.inputs.train_path, recipe.data.row_schema)
    val_path = job.inputs.validation_path
    val_rows = read_rows(val_path, recipe.data.row_schema) if val_path is not None else []
    tokenizer = _tokenizer(job, train_rows, ctx, job.output_dir / TOKENIZER_DIR)
    labels = class_labels(train_rows) if spec.task == "classification" else []
    model = _model(recipe, job, tokenizer, labels)
    counts = count_parameters(model)
    seed_process(recipe.optim.seed, ctx)
    make = _Examples(tokenizer, recipe, labels)
    trainer = EncoderTrainer(
        model,
        make(train_rows, salt=0),
        make(val_rows, salt=1) if val_rows else [],
        recipe,
        pad_id=int(tokenizer.pad_token_id),
        checkpoint_dir=job.output_dir / CHECKPOINT_DIR,
        observer=observer,
        ctx=ctx,
        device=device,
        task=spec.task,
    )
    from llmops.train.checkpoint import latest_checkpoint

    latest = latest_checkpoint(job.output_dir / CHECKPOINT_DIR) if job.resume else None
    if latest is not None:
        trainer.resume(latest)
    outcome: LoopOutcome = trainer.run()
    model_dir = job.output_dir / MODEL_DIR
    if ctx.is_main:
        assert isinstance(trainer.model, PreTrainedModel)

        def write(tmp: Path) -> None:
            save_model(trainer.model, tmp)  # type: ignore[arg-type]
            tokenizer.save_pretrained(str(tmp))

        finish_dir(model_dir, write)
    barrier(ctx)
    return result_of(job, outcome, model_dir, counts.total, counts.trainable, ctx)


def _spec(recipe: Recipe) -> EncoderSpec:
    assert recipe.encoder is not None  # the recipe validator requires it for kind encoder
    return recipe.encoder


def class_labels(rows: list[Row]) -> list[str]:
    """The label set of classification rows: their distinct completions, sorted."""
    labels = sorted({row.completion.strip() for row in rows if isinstance(row, PromptCompletionRow)})
    if len(labels) < 2:
        raise InvalidInput(
            f"classification needs at least two labels (distinct completions), found {len(labels)}",
            param="data.train",
        )
    return labels


def _text_of(row: Row) -> str:
    if isinstance(row, TextRow):
        return row.text
    if isinstance(row, PromptCompletionRow):
        return row.prompt
    raise InvalidInput("an encoder reads text or prompt_completion rows", param="data.schema")


def _tokenizer(job: TrainJob, rows: list[Row], ctx: DistContext, folder: Path) -> PreTrainedTokenizerBase:
    spec, inputs = job.recipe.tokenizer, job.inputs
    if spec.source == "base":
        assert inputs.base_model_dir is not None
        return add_encoder_tokens(load_tokenizer(inputs.base_model_dir))
    if spec.source == "ref":
        assert inputs.tokenizer_dir is not None
        return add_encoder_tokens(load_tokenizer(inputs.tokenizer_dir))
    if ctx.is_main and not (job.resume and folder.is_dir()):
        model = job.recipe.model
        assert isinstance(model, NewModelSpec)
        trained = train_tokenizer(
            (_text_of(row) for row in rows),
            folder,
            vocab_size=spec.vocab_size,
            min_frequency=spec.min_frequency,
            model_max_length=model.max_position_embeddings,
        )
        add_encoder_tokens(trained).save_pretrained(str(folder))
    barrier(ctx)
    return add_encoder_tokens(load_tokenizer(folder))


def _model(
    recipe: Recipe, job: TrainJob, tokenizer: PreTrainedTokenizerBase, labels: list[str]
) -> PreTrainedModel:
    task = _spec(recipe).task
    if isinstance(recipe.model, NewModelSpec):
        model = build_encoder(
            encoder_config(recipe.model, tokenizer, task, labels), task, seed=recipe.optim.seed
        )
    else:
        assert job.inputs.base_model_dir is not None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.optim.seed)  # a new head starts from the same weights every run
            model = load_encoder(job.inputs.base_model_dir, task, labels)
        if int(model.config.vocab_size) < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))
    limit = int(model.config.max_position_embeddings)
    if recipe.max_seq_len > limit:
        raise InvalidInput(
            f"max_seq_len {recipe.max_seq_len} exceeds the model's {limit}", param="max_seq_len"
        )
    return model


class _Examples:
    """Rows to the loop's examples for the recipe's task."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, recipe: Recipe, labels: list[str]) -> None:
        self.tokenizer, self.recipe, self.spec = tokenizer, recipe, _spec(recipe)
        self.index = {label: i for i, label in enumerate(labels)}

    def __call__(self, rows: list[Row], *, salt: int) -> list[Example]:
        if self.spec.task == "classification":
            return [self._classified(row) for row in rows]
        rng = random.Random(f"{self.recipe.optim.seed}:{salt}")
        return [self._masked(_text_of(row), rng) for row in rows]

    def _classified(self, row: Row) -> Example:
        assert isinstance(row, PromptCompletionRow)
        label = row.completion.strip()
        if label not in self.index:
            raise InvalidInput(
                f"validation label {label[:60]!r} never occurs in the training data", param="data.validation"
            )
        ids = encode_text(self.tokenizer, row.prompt, self.recipe.max_seq_len)
        return Example(ids, [IGNORE_INDEX, self.index[label], *([IGNORE_INDEX] * (len(ids) - 2))])

    def _masked(self, text: str, rng: random.Random) -> Example:
        ids = encode_text(self.tokenizer, text, self.recipe.max_seq_len)
        inner = list(range(1, len(ids) - 1))  # never [CLS] or [SEP]
        if not inner:
            inner = [len(ids) - 1]
        chosen = [i for i in inner if rng.random() < self.spec.mask_probability] or [rng.choice(inner)]
        inputs, labels = list(ids), [IGNORE_INDEX] * len(ids)
        vocab = len(self.tokenizer)
        for i in chosen:
            labels[i] = ids[i]
            draw = rng.random()
            if draw < 0.8:
                inputs[i] = int(self.tokenizer.mask_token_id)
            elif draw < 0.9:
                inputs[i] = rng.randrange(vocab)
        return Example(inputs, labels)


class EncoderTrainer(Trainer):
    """The training loop with an encoder's loss (classification head, or masked tokens)."""

    def __init__(self, *args: Any, task: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.task = task

    def _loss_sum(self, module: torch.nn.Module, batch: Batch) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.optim.precision == "bf16"):
            logits = module(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        if self.task == "classification":
            return F.cross_entropy(logits.float(), batch.labels[:, 1], reduction="sum")
        vocab = logits.shape[-1]
        return F.cross_entropy(
            logits.float().reshape(-1, vocab),
            batch.labels.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
