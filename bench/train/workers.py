"""What one worker process measures: the bare PyTorch loop, the platform's ``train()``, or a baseline.

Each configuration runs in a fresh process (1 torch thread), so no run inherits another's allocator
state or warm caches, and ``ru_maxrss`` is the peak of that configuration alone.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile
from workload import SEED, Sizes, Workload, recipe

from llmops.train import TrainingObserver, TrainingResult, TrainInputs, train
from llmops.train.order import DataCursor, take

Mark = tuple[float, float]  # (time.perf_counter(), time.process_time()): wall and this process's CPU


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _peak_allocated_bytes(prof: profile) -> int:
    """Peak of torch's CPU allocations (allocs minus frees, in time order) over the profiled window."""
    results: Any = prof.profiler.kineto_results if prof.profiler is not None else None
    events: list[Any] = results.events() if results is not None else []
    memory = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    running = peak = 0
    for _, nbytes in memory:
        running += nbytes
        peak = max(peak, running)
    return peak


class BenchObserver:
    """Timestamps every step, times the observer and checkpoint work, and samples memory.

    ``marks[k]`` (wall and process CPU seconds) is taken when step ``k``'s metrics arrive (after its
    optimizer step), before ``inner`` runs, so ``marks[n] - marks[w]`` covers steps w+1..n with
    their observer calls and any checkpoint written in between. ``parts`` holds the (wall, CPU)
    seconds of each piece of platform work per step: ``on_step`` (the inner observer), ``checkpoint``
    (the write, fsyncs included) and ``on_checkpoint``. ``rss_at`` reads the peak RSS at that step;
    ``profile_from`` starts torch's profiler (memory events) there and stops it at ``last_step``.
    """

    def __init__(
        self,
        inner: TrainingObserver | None,
        *,
        rss_at: int | None = None,
        profile_from: int | None = None,
        last_step: int | None = None,
    ) -> None:
        self.inner = inner
        self.marks: dict[int, Mark] = {}
        self.parts: dict[str, dict[int, Mark]] = {"on_step": {}, "checkpoint": {}, "on_checkpoint": {}}
        self.rss_mib: float | None = None
        self.torch_peak_bytes: int | None = None
        self._rss_at, self._profile_from, self._last = rss_at, profile_from, last_step
        self._profiler: profile | None = None
        self._returned = _mark()

    def _part(self, name: str, step: int, since: Mark) -> None:
        self._returned = _mark()
        self.parts[name][step] = (self._returned[0] - since[0], self._returned[1] - since[1])

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        now = self.marks[step] = _mark()
        if step == self._rss_at:
            self.rss_mib = _maxrss_mib()
        if step == self._profile_from:
            self._profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
            self._profiler.start()
        elif self._profiler is not None and step == self._last:
            self._profiler.stop()
            self.torch_peak_bytes = _peak_allocated_bytes(self._profiler)
            self._profiler = None
        if self.inner is not None:
            self.inner.on_step(step, metrics)
        self._part("on_step", step, now)

    def on_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        if self.inner is not None:
            self.inner.on_eval(step, metrics)

    def on_checkpoint(self, step: int, path: Path) -> None:
        # Nothing runs between this step's on_step and the checkpoint (validation is off).
        self._part("checkpoint", step, self._returned)
        start = self._returned
        if self.inner is not None:
            self.inner.on_checkpoint(step, path)
        self._part("on_checkpoint", step, start)


def _window(marks: Mapping[int, Mark], first: int, last: int) -> dict[str, Any]:
    """Wall and CPU seconds from ``marks[first]`` to ``marks[last]``, in total and per step."""
    steps = range(first + 1, last + 1)
    return {
        "wall_s": marks[last][0] - marks[first][0],
        "cpu_s": marks[last][1] - marks[first][1],
        "step_s": [marks[k][0] - marks[k - 1][0] for k in steps],
        "step_cpu_s": [marks[k][1] - marks[k - 1][1] for k in steps],
    }


def _mark() -> Mark:
    return time.perf_counter(), time.process_time()


def _load_avg() -> float:
    return os.getloadavg()[0]


class BareLoop:
    """The bare PyTorch loop on its own copy of the base model, one step at a time.

    A step is: forward with labels, backward, clip, AdamW step, scheduler step, zero_grad; nothing
    else (the loss is kept as a tensor and read after the run). The batches are the platform's,
    built by hand in its data order, before any step.
    """

    def __init__(self, sizes: Sizes, workload: Workload, steps: int) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_schedule_with_warmup

        tokenizer = AutoTokenizer.from_pretrained(str(workload.base_dir), local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(
            str(workload.base_dir), local_files_only=True, dtype=torch.float32
        )
        self.model.train()
        self.batches = _bare_batches(tokenizer, workload, sizes, steps)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # The platform's optimizer: AdamW, decay on matrices only; cosine schedule, no warm-up.
        groups = [
            {"params": [p for p in self.params if p.ndim >= 2], "weight_decay": 0.1},
            {"params": [p for p in self.params if p.ndim < 2], "weight_decay": 0.0},
        ]
        self.optimizer = torch.optim.AdamW(groups, lr=3.0e-4, betas=(0.9, 0.95), eps=1e-8)
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, 0, steps)
        self.losses: list[torch.Tensor] = []

    def step(self, step: int) -> None:
        input_ids = self.batches[step - 1]
        mask = torch.ones_like(input_ids)
        loss = self.model(input_ids=input_ids, attention_mask=mask, labels=input_ids, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.losses.append(loss.detach())


def run_bare(sizes: Sizes, workload: Workload) -> dict[str, Any]:
    steps = sizes.warmup_steps + sizes.measured_steps
    loop = BareLoop(sizes, workload, steps)
    marks = {0: _mark()}
    for step in range(1, steps + 1):
        loop.step(step)
        marks[step] = _mark()
    return {**_window(marks, sizes.warmup_steps, steps), "losses": [float(x) for x in loop.losses]}


def _bare_batches(tokenizer: Any, workload: Workload, sizes: Sizes, steps: int) -> list[torch.Tensor]:
    """The platform's batches: bos + text + eos rows in its data order, [batch, seq] each."""
    lines = workload.rows_path.read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    rows = [[bos, *tokenizer(t, add_special_tokens=False)["input_ids"], eos] for t in texts]
    assert all(len(r) == sizes.seq_len for r in rows), "every row must be exactly seq_len tokens"
    batches, cursor = [], DataCursor()
    for _ in range(steps):
        indices, cursor = take(cursor, sizes.batch, len(rows), SEED)
        batches.append(torch.tensor([rows[i] for i in indices], dtype=torch.long))
    return batches


class PairedObserver(BenchObserver):
    """After each platform step (and its tracking call), runs the bare loop's step on the same batch.

    Both loops then share the process and every moment of machine load: platform step k costs
    ``marks[k] - marks[k-1] - bare[k-1]`` (its loop, tracking and checkpoint included).
    """

    def __init__(self, inner: TrainingObserver, bare: BareLoop) -> None:
        super().__init__(inner)
        self.bare_loop = bare
        self.bare: dict[int, Mark] = {}

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        super().on_step(step, metrics)
        start = _mark()
        self.bare_loop.step(step)
        end = self._returned = _mark()
        self.bare[step] = (end[0] - start[0], end[1] - start[1])


def _train_tracked(
    sizes: Sizes, workload: Workload, work: Path, observer: Callable[[TrainingObserver], BenchObserver]
) -> tuple[BenchObserver, TrainingResult]:
    """``train()`` with tracking (a run in a fresh LLMOPS home) and checkpoints, validation and bar off."""
    from llmops.settings import Settings
    from llmops.store.home import open_home
    from llmops.tracking import Tracker
    from llmops.train.tracked import TrackingObserver

    steps = sizes.warmup_steps + sizes.measured_steps
    home = open_home(Settings(home=work / "home"))
    job = recipe("finetune", sizes, steps=steps, checkpoint_every=sizes.checkpoint_every)
    inputs = TrainInputs(train_path=workload.rows_path, base_model_dir=workload.base_dir)
    with Tracker.from_home(home).start_run("bench-train", "platform") as run:
        bench = observer(TrackingObserver(run))
        result = train(job, inputs, work / "out", observer=bench, num_threads=1, show_progress=False)
    return bench, result


def run_platform(sizes: Sizes, workload: Workload, work: Path) -> dict[str, Any]:
    observer, result = _train_tracked(sizes, workload, work, BenchObserver)
    steps = sizes.warmup_steps + sizes.measured_steps
    in_window = range(sizes.warmup_steps, steps)  # observer calls made inside the window
    return {
        **_window(observer.marks, sizes.warmup_steps, steps),
        "losses": result.train_losses,
        "parts": {
            name: [v for k, v in part.items() if k in in_window] for name, part in observer.parts.items()
        },
    }


def run_paired(sizes: Sizes, workload: Workload, work: Path) -> dict[str, Any]:
    """The platform and the bare loop interleaved step by step in one process."""
    steps = sizes.warmup_steps + sizes.measured_steps
    bare = BareLoop(sizes, workload, steps)
    observer, result = _train_tracked(sizes, workload, work, lambda inner: PairedObserver(inner, bare))
    assert isinstance(observer, PairedObserver)
    window = range(sizes.warmup_steps + 1, steps + 1)
    marks, pairs = observer.marks, observer.bare
    platform = [tuple(marks[k][i] - marks[k - 1][i] - pairs[k - 1][i] for i in (0, 1)) for k in window]
    return {
        "platform_s": platform,
        "bare_s": [pairs[k] for k in window],
        "loss_delta": max(abs(a - float(b)) for a, b in zip(result.train_losses, bare.losses, strict=True)),
    }


def run_tune(kind: str, sizes: Sizes, workload: Workload, work: Path) -> dict[str, Any]:
    """A finetune or lora recipe: step time over the window, then RSS, then profiled steps."""
    end = sizes.warmup_steps + sizes.tune_steps
    steps = end + sizes.profile_steps
    observer = BenchObserver(None, rss_at=end, profile_from=end, last_step=steps)
    job = recipe(kind, sizes, steps=steps, checkpoint_every=None)
    inputs = TrainInputs(train_path=workload.rows_path, base_model_dir=workload.base_dir)
    result = train(job, inputs, work / "out", observer=observer, num_threads=1, show_progress=False)
    return {
        **_window(observer.marks, sizes.warmup_steps, end),
        "trainable_params": result.trainable_params,
        "total_params": result.total_params,
        "rss_mib": observer.rss_mib,
        "torch_step_peak_bytes": observer.torch_peak_bytes,
    }


def run_baseline(workload: Workload) -> dict[str, Any]:
    """The same imports, the model and its tokenizer loaded; no training."""
    import llmops.train.runner  # noqa: F401  (the imports a training process has)
    from llmops.train.modeling import load_model
    from llmops.train.tokenizer import load_tokenizer

    model = load_model(workload.base_dir)
    load_tokenizer(workload.base_dir)
    assert math.isfinite(float(next(model.parameters()).sum()))
    return {"rss_mib": _maxrss_mib()}


def run_worker(kind: str, sizes: Sizes, workload: Workload, work: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    load = _load_avg()
    if kind == "bare":
        result = run_bare(sizes, workload)
    elif kind == "platform":
        result = run_platform(sizes, workload, work)
    elif kind == "paired":
        result = run_paired(sizes, workload, work)
    elif kind in ("finetune", "lora"):
        result = run_tune(kind, sizes, workload, work)
    elif kind == "baseline":
        result = run_baseline(workload)
    else:
        raise ValueError(f"unknown worker {kind}")
    return {**result, "kind": kind, "load_1m": [load, _load_avg()], "threads": torch.get_num_threads()}
