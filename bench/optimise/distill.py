"""Distillation benchmark: a student with at most 1/4 of the teacher's parameters, exact match kept.

One run, in a fresh store under ``--work``: synthesise the demo's intent task (``llmops data synth
intent``), split it, train the teacher (a smaller version of the demo recipe ``demo-intent.yaml``,
so the run fits a shared CPU; ``--demo-teacher`` trains the demo recipe itself), distil a student
(``kind: distill``, on the teacher's own answers) through ``llmops train run``,
then score both on the held-out test split: exact match of the greedy reply (whitespace-stripped)
through the engine. Prints the parameter ratio and the share of the teacher's exact match kept.

    PYTHONPATH=src:. python bench/optimise/distill.py --threads 1

The registered teacher and student stay in ``--work`` for ``bench/optimise/speculative.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEMO_RECIPE = ROOT / "src" / "llmops" / "train" / "recipes" / "demo-intent.yaml"
# The demo recipe scaled to a shared 2-core machine: 3 layers of 96, a 1024-token vocabulary.
TEACHER_RECIPE = """
kind: pretrain
name: demo-intent
model: {architecture: llama, hidden_size: 96, intermediate_size: 256, num_layers: 3, num_heads: 4,
        num_kv_heads: 2, max_position_embeddings: 256, tie_embeddings: true}
data: {train: intent-train, validation: intent-validation, schema: prompt_completion}
tokenizer: {source: train, vocab_size: 1024, min_frequency: 2}
optim: {lr: 3.0e-3, warmup_steps: 15, max_steps: STEPS, batch_size: BATCH, seed: 0}
max_seq_len: 128
packing: true
"""
STUDENT_RECIPE = """
kind: distill
name: demo-intent-student
model: {architecture: llama, hidden_size: 56, intermediate_size: 112, num_layers: 1, num_heads: 4,
        num_kv_heads: 2, max_position_embeddings: 256, tie_embeddings: true}
data: {train: intent-train, validation: intent-validation, schema: prompt_completion}
distill:
  teacher: demo-intent@1
  temperature: 2.0
  alpha: 0.5
  teacher_data: {max_tokens: 32}
optim: {lr: 1.0e-2, warmup_steps: 15, max_steps: STUDENT_STEPS, batch_size: BATCH, seed: 0}
max_seq_len: 128
packing: true
"""
TEACHER, STUDENT = "demo-intent@1", "demo-intent-student@1"


def cli(*args: str) -> None:
    from llmops.cli.main import main

    code = main([str(a) for a in args])
    if code != 0:
        raise SystemExit(f"llmops {' '.join(map(str, args))} failed with exit code {code}")


def _sized(recipe: str, steps: int, student_steps: int, batch: int) -> str:
    sizes = {"STUDENT_STEPS": student_steps, "STEPS": steps, "BATCH": batch}
    for name, value in sizes.items():
        recipe = recipe.replace(name, str(value))
    return recipe


def prepare(
    work: Path,
    threads: int,
    rows: int,
    demo_teacher: bool = False,
    steps: int = 150,
    batch: int = 8,
    student_steps: int = 300,
) -> dict[str, float]:
    """Data, teacher and student in the store under ``work`` (skipped when already there)."""
    from llmops.registry import Registry
    from llmops.store.home import open_home

    registry = Registry.from_home(open_home())
    names = {m.name for m in registry.list_models()}
    timings: dict[str, float] = {}
    if "demo-intent" not in names:
        cli("data", "synth", "intent", "--name", "intent", "--n", str(rows), "--seed", "0")
        cli("data", "split", "intent", "--key", "prompt")
        teacher = DEMO_RECIPE
        if not demo_teacher:
            teacher = work / "teacher.yaml"
            teacher.write_text(_sized(TEACHER_RECIPE, steps, student_steps, batch))
        start = time.perf_counter()
        cli("train", "run", teacher, "--threads", str(threads))
        timings["teacher_train_s"] = time.perf_counter() - start
    if "demo-intent-student" not in names:
        recipe = work / "student.yaml"
        recipe.write_text(_sized(STUDENT_RECIPE, steps, student_steps, batch))
        start = time.perf_counter()
        cli("train", "run", recipe, "--threads", str(threads))
        timings["student_train_s"] = time.perf_counter() - start
    return timings


def model_dirs() -> tuple[Path, Path]:
    from llmops.registry import Registry
    from llmops.store.home import open_home

    registry = Registry.from_home(open_home())
    return registry.local_path(TEACHER), registry.local_path(STUDENT)


def held_out() -> list[dict[str, Any]]:
    from llmops.data.versions import DatasetStore
    from llmops.store.home import open_home

    return DatasetStore.from_home(open_home()).rows("intent-test")


def exact_match(model_dir: Path, rows: list[dict[str, Any]], threads: int) -> float:
    from llmops.engine.config import EngineConfig
    from llmops.engine.offline import complete_prompts

    answers = complete_prompts(
        model_dir, [r["prompt"] for r in rows], 32, config=EngineConfig(threads=threads)
    )
    hits = sum(a.strip() == r["completion"].strip() for a, r in zip(answers, rows, strict=True))
    return hits / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/llmops-bench-optimise"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training and the engine")
    parser.add_argument("--rows", type=int, default=800, help="synthetic intent rows (80%% train)")
    parser.add_argument("--demo-teacher", action="store_true", help="train the demo recipe as the teacher")
    parser.add_argument("--steps", type=int, default=150, help="optimiser steps of the teacher")
    parser.add_argument("--student-steps", type=int, default=300, help="optimiser steps of the student")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per step (packed rows)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ["LLMOPS_HOME"] = str(args.work / "home")
    import torch

    torch.set_num_threads(args.threads)
    timings = prepare(
        args.work, args.threads, args.rows, args.demo_teacher, args.steps, args.batch_size, args.student_steps
    )
    from llmops.registry import Registry
    from llmops.store.home import open_home

    registry = Registry.from_home(open_home())
    teacher_params = registry.get(TEACHER).metrics["total_params"]
    student_params = registry.get(STUDENT).metrics["total_params"]
    rows = held_out()
    teacher_dir, student_dir = model_dirs()
    teacher_em = exact_match(teacher_dir, rows, args.threads)
    student_em = exact_match(student_dir, rows, args.threads)
    result = {
        "teacher_params": teacher_params,
        "student_params": student_params,
        "param_ratio": student_params / teacher_params,
        "held_out_rows": len(rows),
        "teacher_exact_match": teacher_em,
        "student_exact_match": student_em,
        "kept_share": student_em / teacher_em if teacher_em else 0.0,
        "threads": args.threads,
        "steps": args.steps,
        "student_steps": args.student_steps,
        "batch_size": args.batch_size,
        **timings,
    }
    goals = {
        "param_ratio <= 0.25": result["param_ratio"] <= 0.25,
        "kept_share >= 0.90": result["kept_share"] >= 0.9,
    }
    print("| | teacher | student | ratio |\n|---|---|---|---|")
    print(f"| parameters | {teacher_params:,} | {student_params:,} | {result['param_ratio']:.3f} |")
    print(
        f"| exact match (held-out, {len(rows)} rows) | {teacher_em:.3f} | {student_em:.3f} | "
        f"{result['kept_share']:.3f} |"
    )
    for goal, met in goals.items():
        print(f"goal {goal}: {'met' if met else 'MISSED'}")
    (args.work / "distill.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
