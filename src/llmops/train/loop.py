"""The training loop: global batches, accumulation, clipping, evaluation, early stopping, checkpoints.

One optimiser step takes ``grad_accum`` global micro-batches of ``batch_size`` sequences; each
process runs its shard of each. The step's gradient is the mean over every target token of the
whole global batch (not a mean of per-batch means), so the result does not depend on how sequences
are split across micro-batches or processes.

A loss or gradient norm that is NaN/inf, or a loss above ``divergence_factor`` times the first
step's, raises ``TrainingFailed`` naming the step. Every decision is taken on all-reduced numbers,
so all processes decide alike.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from llmops.errors import InvalidInput
from llmops.train.batching import IGNORE_INDEX, Batch, Example, collate
from llmops.train.checkpoint import TrainerState, load_checkpoint, save_checkpoint
from llmops.train.collectives import DistContext, all_reduce_sum
from llmops.train.messages import NullObserver, TrainingFailed, TrainingObserver
from llmops.train.optimizer import build_optimizer, build_scheduler, trainable_parameters
from llmops.train.order import shard, take
from llmops.train.recipe import Recipe
from llmops.train.rng import capture_rng, restore_rng

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopOutcome:
    """How the loop ended; ``state`` holds the loss history and the data position."""

    state: TrainerState
    resumed_from_step: int | None
    session_tokens: int
    wall_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.session_tokens / self.wall_s if self.wall_s > 0 else 0.0


class Trainer:
    """Trains ``model`` in place on already-encoded examples; only rank 0 writes and observes."""

    def __init__(
        self,
        model: torch.nn.Module,
        train_examples: Sequence[Example],
        val_examples: Sequence[Example],
        recipe: Recipe,
        *,
        pad_id: int,
        checkpoint_dir: Path,
        observer: TrainingObserver | None = None,
        ctx: DistContext | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.ctx = ctx or DistContext()
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device)
        self.model.train()
        self.recipe, self.optim = recipe, recipe.optim
        self._train, self._val, self._pad_id = list(train_examples), list(val_examples), pad_id
        self._checkpoint_dir = checkpoint_dir
        self._observer: TrainingObserver = (
            observer if observer is not None and self.ctx.is_main else NullObserver()
        )
        self._ddp = self._wrap_ddp() if self.ctx.enabled else None
        self.optimizer = build_optimizer(self.model, self.optim)
        self.scheduler = build_scheduler(self.optimizer, self.optim)
        self.state = TrainerState()
        self.resumed_from_step: int | None = None

    def _wrap_ddp(self) -> DistributedDataParallel:
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)

    # ---- resume -------------------------------------------------------------------------------

    def resume(self, path: Path) -> None:
        """Load weights, optimizer, scheduler, random state and data position from a checkpoint."""
        checkpoint = load_checkpoint(path)
        params = trainable_parameters(self.model)
        if set(params) != set(checkpoint.model):
            raise InvalidInput(
                f"checkpoint {path.name} does not match this model (different recipe?); "
                "start in an empty output folder instead",
                param="resume",
            )
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(checkpoint.model[name])
        self.optimizer.load_state_dict(checkpoint.optimizer)
        self.scheduler.load_state_dict(checkpoint.scheduler)
        restore_rng(checkpoint.rng, self.ctx, self.device)
        self.state = checkpoint.trainer
        self.resumed_from_step = self.state.step
        log.info("resumed from %s at step %d", path, self.state.step)

    # ---- the loop -----------------------------------------------------------------------------

    def run(self) -> LoopOutcome:
        """Train until ``max_steps`` or early stopping; evaluate once more at the end if needed."""
        started, session_tokens = time.perf_counter(), 0
        while self.state.step < self.optim.max_steps and not self.state.stopped_early:
            step = self.state.step + 1
            metrics = self._train_step(step)
            session_tokens += int(metrics["tokens"])
            elapsed = time.perf_counter() - started
            metrics["tokens_per_s"] = session_tokens / elapsed if elapsed > 0 else 0.0
            self._observer.on_step(step, metrics)
            if self.recipe.eval_every and step % self.recipe.eval_every == 0:
                self.state.stopped_early = self._evaluate_and_track(step)
            if self.recipe.checkpoint_every and step % self.recipe.checkpoint_every == 0:
                self.save_checkpoint()
        if self._val and (not self.state.val_losses or self.state.val_losses[-1][0] != self.state.step):
            self._evaluate_and_track(self.state.step)
        wall = time.perf_counter() - started
        return LoopOutcome(self.state, self.resumed_from_step, session_tokens, wall)

    def _train_step(self, step: int) -> dict[str, float]:
        """One optimiser step over a global batch; returns this step's metrics."""
        micro_batches = self._next_global_batch()
        examples = [self._train[i] for indices in micro_batches for i in indices]
        targets = sum(e.num_targets for e in examples)
        tokens = sum(len(e.input_ids) for e in examples)
        # DDP averages gradients over processes; scaling by world/targets makes the summed result
        # the token mean over the global batch.
        scale = self.ctx.world_size / targets
        local_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        for k, indices in enumerate(micro_batches):
            local = [self._train[i] for i in shard(indices, self.ctx.rank, self.ctx.world_size)]
            batch = collate(local, self._pad_id).to(self.device)
            with self._gradient_sync(last=k == len(micro_batches) - 1):
                loss_sum = self._train_loss_sum(self._ddp or self.model, batch)
                (loss_sum * scale).backward()
            local_loss += loss_sum.detach().double()
        loss = all_reduce_sum(local_loss, self.ctx).item() / targets
        grad_norm = self._clip()
        self._check_divergence(step, loss, grad_norm)
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step = step
        self.state.train_losses.append(loss)
        self.state.tokens_seen += tokens
        return {"loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens": float(tokens)}

    def _next_global_batch(self) -> list[list[int]]:
        """Global example indices of this step's micro-batches; advances the data position."""
        micro_batches = []
        for _ in range(self.optim.grad_accum):
            indices, self.state.cursor = take(
                self.state.cursor, self.optim.batch_size, len(self._train), self.optim.seed
            )
            micro_batches.append(indices)
        return micro_batches

    @contextlib.contextmanager
    def _gradient_sync(self, *, last: bool) -> Iterator[None]:
        """Skip DDP's gradient all-reduce on all but the last micro-batch of a step."""
        if self._ddp is None or last:
            yield
        else:
            with self._ddp.no_sync():
                yield

    def _train_loss_sum(self, module: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """The training objective, summed over target tokens (distillation overrides it)."""
        return self._loss_sum(module, batch)

    def _loss_sum(self, module: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Summed next-token cross-entropy over the batch's target tokens (a scalar)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.optim.precision == "bf16"):
            logits = module(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
            ).logits
        vocab = logits.shape[-1]
        # Position t predicts token t+1: logits [B, T-1, V] against labels [B, T-1], in fp32.
        shifted = logits[:, :-1].float().reshape(-1, vocab)
        return F.cross_entropy(
            shifted, batch.labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        )

    def _clip(self) -> float:
        """Clip (when configured) and return the global gradient norm; grads are already synced."""
        params = list(trainable_parameters(self.model).values())
        max_norm = self.optim.clip_norm if self.optim.clip_norm is not None else math.inf
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def _check_divergence(self, step: int, loss: float, grad_norm: float) -> None:
        hint = "lower optim.lr, add warm-up or clipping"
        if not math.isfinite(loss):
            raise TrainingFailed(f"training diverged at step {step}: loss is {loss}; {hint}", step=step)
        if not math.isfinite(grad_norm):
            raise TrainingFailed(
                f"training diverged at step {step}: gradient norm is {grad_norm}; {hint}", step=step
            )
        if self.state.train_losses:
            first, factor = self.state.train_losses[0], self.optim.divergence_factor
            if loss > factor * first:
                raise TrainingFailed(
                    f"training diverged at step {step}: loss {loss:.4g} exceeds {factor:g} x the first "
                    f"step's {first:.4g}; {hint}",
                    step=step,
                )

    # ---- evaluation and checkpoints -----------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Token-mean validation loss over the whole validation set (each process a share)."""
        if not self._val:
            return None
        self.model.eval()
        n, rank, world = len(self._val), self.ctx.rank, self.ctx.world_size
        mine = self._val[n * rank // world : n * (rank + 1) // world]
        per_batch = max(1, self.optim.batch_size // world)
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # [loss sum, targets]
        for start in range(0, len(mine), per_batch):
            batch = collate(mine[start : start + per_batch], self._pad_id).to(self.device)
            totals[0] += self._loss_sum(self.model, batch).double()
            totals[1] += batch.num_targets
        self.model.train()
        loss_sum, targets = all_reduce_sum(totals, self.ctx).tolist()
        return loss_sum / targets if targets else None

    def _evaluate_and_track(self, step: int) -> bool:
        """Evaluate, update the best loss; True when early stopping says stop."""
        val = self.evaluate()
        if val is None:
            return False
        if not math.isfinite(val):
            raise TrainingFailed(f"training diverged at step {step}: validation loss is {val}", step=step)
        state = self.state
        state.val_losses.append((step, val))
        if state.best_val_loss is None or val < state.best_val_loss:
            state.best_val_loss, state.best_step, state.bad_evals = val, step, 0
        else:
            state.bad_evals += 1
        self._observer.on_eval(step, {"val_loss": val, "best_val_loss": state.best_val_loss})
        patience = self.recipe.early_stopping_patience
        return patience is not None and state.bad_evals >= patience

    def save_checkpoint(self) -> Path | None:
        """Checkpoint the current step (a collective: every process calls it; rank 0 writes)."""
        rng = capture_rng(self.ctx, self.device)
        if not self.ctx.is_main:
            return None
        path = save_checkpoint(
            self._checkpoint_dir,
            model={name: p.detach() for name, p in trainable_parameters(self.model).items()},
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            rng=rng,
            trainer=self.state,
            keep=self.recipe.keep_checkpoints,
        )
        self._observer.on_checkpoint(self.state.step, path)
        return path
