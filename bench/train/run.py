"""Training benchmark: the platform's training loop against a bare PyTorch loop, and LoRA against full.

    .venv/bin/python bench/train/run.py [--quick] [--repeats N] [--output PATH]

1. Same model, same batches (every row full, same data order), same optimizer and schedule: a bare
   loop (forward with labels, backward, clip, AdamW, scheduler, zero_grad) against
   ``llmops.train.train()`` with a ``TrackingObserver`` on a run in a temporary LLMOPS home and a
   checkpoint every ``checkpoint_every`` steps (validation and the progress bar off). Tokens/s over
   the same steps after the same warm-up, in wall-clock and process CPU time; target: platform
   >= 0.95x bare. Then once more interleaved in one process (each platform step followed by a bare
   step on the same batch), which shares every moment of machine load between the two loops.
2. ``finetune`` against ``lora`` recipes on the same base model: median ms/step, parameters, peak
   RSS over a baseline process that only loads the model, and torch's own (profiler) allocations.

Every configuration runs in its own process with 1 torch thread, one after another, repeated and
interleaved (the median is reported). Writes markdown to ``bench/train/RESULTS.md`` (``--quick``:
tiny sizes, one repeat, for smoke checks; writes only when ``--output`` is given).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from workers import run_worker
from workload import FULL, QUICK, Sizes, Workload, prepare

HERE = Path(__file__).parent
Result = dict[str, Any]


def parse_args(argv: list[str]) -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one repeat (under a minute)")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each configuration")
    parser.add_argument("--output", type=Path, default=None, help="markdown file (default RESULTS.md)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def worker_main(args: argparse.Namespace) -> None:
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    sizes, workload = Sizes.from_json(spec["sizes"]), Workload.from_json(spec["workload"])
    result = run_worker(args.worker, sizes, workload, Path(spec["work"]))
    args.result.write_text(json.dumps(result), encoding="utf-8")


class Runner:
    """Starts one worker process per measurement, one at a time, with 1 thread each."""

    def __init__(self, root: Path, sizes: Sizes, workload: Workload) -> None:
        self.root, self.count = root, 0
        self.spec = root / "spec.json"
        self.spec.write_text(json.dumps({"sizes": sizes.to_json(), "workload": workload.to_json()}))
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.env["TOKENIZERS_PARALLELISM"] = "false"

    def __call__(self, kind: str) -> Result:
        self.count += 1
        work = self.root / f"{self.count:02d}-{kind}"
        work.mkdir()
        spec = {**json.loads(self.spec.read_text()), "work": str(work)}
        (work / "spec.json").write_text(json.dumps(spec))
        out = work / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind]
        command += ["--spec", str(work / "spec.json"), "--result", str(out)]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"worker {kind} failed with exit status {done.returncode}")
        result: Result = json.loads(out.read_text())
        print(f"  {kind:<9} done (load {result['load_1m'][0]:.2f})", file=sys.stderr, flush=True)
        return result


def median(values: list[float]) -> float:
    return statistics.median(values)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def loop_section(sizes: Sizes, bare: list[Result], platform: list[Result]) -> list[str]:
    """Part 1: tokens/s of both loops (wall and CPU time), the ratios and the same-work check."""
    tokens = sizes.batch * sizes.seq_len * sizes.measured_steps
    lines = [
        f"### 1. Platform loop vs bare PyTorch loop ({sizes.measured_steps} steps after "
        f"{sizes.warmup_steps} warm-up, checkpoint every {sizes.checkpoint_every})",
        "",
        "| loop | tokens/s, wall | tokens/s, CPU time | ms/step, wall | ms/step, CPU | wall tokens/s per run "
        "| 1-min load per run |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    rates: dict[str, tuple[list[float], list[float]]] = {}
    for name, runs in (("bare PyTorch", bare), ("platform `train()`", platform)):
        wall = [tokens / r["wall_s"] for r in runs]
        cpu = [tokens / r["cpu_s"] for r in runs]
        rates[name] = (wall, cpu)
        loads = ", ".join(f"{r['load_1m'][0]:.1f}-{r['load_1m'][1]:.1f}" for r in runs)
        lines.append(
            f"| {name} | {median(wall):,.0f} | {median(cpu):,.0f} "
            f"| {_ms(median([r['wall_s'] for r in runs]) / sizes.measured_steps)} "
            f"| {_ms(median([r['cpu_s'] for r in runs]) / sizes.measured_steps)} "
            f"| {', '.join(f'{w:,.0f}' for w in wall)} | {loads} |"
        )
    (bare_wall, bare_cpu), (plat_wall, plat_cpu) = rates.values()
    wall_ratio, cpu_ratio = median(plat_wall) / median(bare_wall), median(plat_cpu) / median(bare_cpu)
    pairs = ", ".join(f"{p / b:.3f}" for p, b in zip(plat_wall, bare_wall, strict=True))
    cpu_pairs = ", ".join(f"{p / b:.3f}" for p, b in zip(plat_cpu, bare_cpu, strict=True))
    delta = max(abs(a - b) for a, b in zip(bare[0]["losses"], platform[0]["losses"], strict=True))
    return [
        *lines,
        "",
        f"**Platform / bare, CPU time: {cpu_ratio:.3f}x** (per interleaved pair: {cpu_pairs}); "
        f"wall clock: {wall_ratio:.3f}x (per pair: {pairs}). Target: >= 0.95x. CPU time is this "
        "process's (all its threads, the tracking writer's included): other work on the shared "
        "cores stretches wall time but not CPU time.",
        f"Same work: the per-step losses of the two loops differ by at most {delta:.2e}.",
        "",
        *overhead_lines(sizes, bare, platform),
    ]


def overhead_lines(sizes: Sizes, bare: list[Result], platform: list[Result]) -> list[str]:
    """Where the platform's extra CPU time goes (medians over runs, ms per step of the window)."""
    n = sizes.measured_steps

    def part(name: str, index: int) -> float:
        return median([sum(t[index] for t in r["parts"][name]) for r in platform]) / n

    gap = (median([r["cpu_s"] for r in platform]) - median([r["cpu_s"] for r in bare])) / n
    on_step, write, on_checkpoint = part("on_step", 1), part("checkpoint", 1), part("on_checkpoint", 1)
    writes = [t for r in platform for t in r["parts"]["checkpoint"]]
    each = f"{median([w for w, _ in writes]) * 1000:.0f} ms wall" if writes else "none in the window"
    return [
        "Platform CPU time over bare, ms per step (the checkpoint amortised over the window):",
        "",
        "| total extra | tracking `on_step` (metrics queued) | checkpoint write | tracking "
        "`on_checkpoint` (`set_tags`, synchronous) | rest (loop bookkeeping, tracking writer thread) |",
        "|---:|---:|---:|---:|---:|",
        f"| {gap * 1000:.2f} | {on_step * 1000:.3f} | {write * 1000:.2f} (each: {each}) "
        f"| {on_checkpoint * 1000:.3f} | {(gap - on_step - write - on_checkpoint) * 1000:.2f} |",
    ]


def paired_section(sizes: Sizes, paired: Result) -> list[str]:
    """Part 1b: the two loops interleaved step by step in one process."""
    platform, bare = paired["platform_s"], paired["bare_s"]
    n = len(platform)

    def total(steps: list[list[float]], index: int) -> float:
        return sum(step[index] for step in steps)

    per_pair = median([b[1] / p[1] for p, b in zip(platform, bare, strict=True)])
    return [
        f"Interleaved in one process (each platform step, then a bare step on the same batch with its "
        f"own copy of the model; {n} pairs after {sizes.warmup_steps} warm-up; the platform's steps include "
        "its tracking calls and checkpoint):",
        "",
        "| loop | ms/step, wall | ms/step, CPU |",
        "|---|---:|---:|",
        f"| bare PyTorch | {_ms(total(bare, 0) / n)} | {_ms(total(bare, 1) / n)} |",
        f"| platform `train()` | {_ms(total(platform, 0) / n)} | {_ms(total(platform, 1) / n)} |",
        "",
        f"**Platform / bare, interleaved: {total(bare, 1) / total(platform, 1):.3f}x in CPU time**, "
        f"{total(bare, 0) / total(platform, 0):.3f}x wall; median per-pair ratio (CPU) {per_pair:.3f}; "
        f"losses differ by at most {paired['loss_delta']:.2e}.",
    ]


def tune_section(sizes: Sizes, baseline: list[Result], tuned: dict[str, list[Result]]) -> list[str]:
    """Part 2: LoRA vs full fine-tune side by side."""
    base_rss = median([r["rss_mib"] for r in baseline])
    targets = ", ".join(sizes.lora_targets)
    lines = [
        f"### 2. LoRA (r {sizes.lora_r}, {targets}) vs full fine-tune ({sizes.tune_steps} steps after "
        f"{sizes.warmup_steps} warm-up; no checkpoints, no tracking)",
        "",
        "| recipe | ms/step, wall (median) | ms/step, CPU (median) | trainable params | total params "
        "| peak RSS over baseline (MiB) | torch step peak (MiB) | weights + AdamW state (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, runs in tuned.items():
        step_ms = median([median(r["step_s"]) for r in runs]) * 1000
        cpu_ms = median([median(r["step_cpu_s"]) for r in runs]) * 1000
        trainable, total = runs[0]["trainable_params"], runs[0]["total_params"]
        rss = median([r["rss_mib"] for r in runs]) - base_rss
        peaks = [r["torch_step_peak_bytes"] for r in runs if r["torch_step_peak_bytes"] is not None]
        torch_peak = f"{median(peaks) / 2**20:.1f}" if peaks else "n/a"
        state = (total * 4 + trainable * 8) / 2**20  # fp32 weights + AdamW exp_avg and exp_avg_sq
        lines.append(
            f"| {kind} | {step_ms:.1f} | {cpu_ms:.1f} | {trainable:,} | {total:,} | {rss:.1f} "
            f"| {torch_peak} | {state:.1f} |"
        )
    full, lora = (median([median(r["step_cpu_s"]) for r in tuned[k]]) for k in ("finetune", "lora"))
    lines += [
        "",
        f"LoRA step CPU time: {lora / full:.2f}x full. Baseline process (imports + model + tokenizer): "
        f"{base_rss:.0f} MiB RSS. RSS is `ru_maxrss` read after the last timed step; torch has no CPU "
        "allocator statistics (`torch.cpu` has none, `torch.accelerator` is for accelerators), so "
        f"'torch step peak' is the peak of the profiler's CPU memory events over {sizes.profile_steps} "
        "step(s) after the window: gradients, activations and temporaries above the weights and "
        "AdamW state (the last column, computed from the parameter counts).",
    ]
    return lines


def main() -> None:
    args = parse_args(sys.argv[1:])
    if args.worker:
        worker_main(args)
        return
    sizes = QUICK if args.quick else FULL
    if args.repeats:
        sizes = replace(sizes, repeats=args.repeats)
    output = args.output or (None if args.quick else HERE / "RESULTS.md")
    command = shlex.join([os.path.relpath(sys.executable), os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    started, load_before = datetime.now(UTC), uptime()
    with tempfile.TemporaryDirectory(prefix="llmops-bench-train-") as tmp:
        torch.set_num_threads(1)
        workload = prepare(Path(tmp), sizes)
        run = Runner(Path(tmp), sizes, workload)
        bare, platform, baseline = [], [], []
        tuned: dict[str, list[Result]] = {"finetune": [], "lora": []}
        for _ in range(sizes.repeats):  # interleaved, so drifting load hits every configuration alike
            bare.append(run("bare"))
            platform.append(run("platform"))
        paired = run("paired")
        baseline.append(run("baseline"))  # loading a model: the same peak every time
        for _ in range(sizes.repeats):
            for kind, runs in tuned.items():
                runs.append(run(kind))
    import peft
    import transformers

    lines = [
        "## Training loop (bench/train)",
        "",
        f"- Command: `{command}` (run from the repository root)",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; wall time {(datetime.now(UTC) - started).seconds} s",
        f"- Load before: `{load_before}`",
        f"- Load after: `{uptime()}`",
        f"- torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}; "
        f"{os.cpu_count()} CPU cores; 1 torch thread per process (`OMP_NUM_THREADS=1`); each "
        f"configuration in its own process, one at a time, {sizes.repeats} interleaved repeat(s), median",
        f"- Model: {sizes.describe()} ({workload.total_params:,} parameters, random weights), "
        "rows of synthetic intent text (`llmops.data.synth`) tokenised with a byte-level BPE "
        "(`train_tokenizer`), every row full; AdamW lr 3e-4, cosine, clip 1.0",
        "",
        *loop_section(sizes, bare, platform),
        "",
        *paired_section(sizes, paired),
        "",
        *tune_section(sizes, baseline, tuned),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
