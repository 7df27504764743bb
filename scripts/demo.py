"""The llmops demo: the whole loop on embedded defaults (SQLite, local files, in-process engine).

Every step runs a real `llmops` command against a fresh home in `.llmops/demo`, printed before it
runs, so what you see is what a user would type. Stages that are not built yet are named at the end.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / ".llmops" / "demo"
RECIPE = ROOT / "src" / "llmops" / "train" / "recipes" / "demo-intent.yaml"
SUITES = ROOT / "examples" / "demo"
ENV = {**os.environ, "LLMOPS_HOME": str(HOME), "LLMOPS_ACTOR": "demo"}

NOT_YET = [
    "serving behind an OpenAI-compatible API through the gateway (keys, limits, budgets)",
    "monitoring (metrics, drift, alerts) and the maintenance loop",
]


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def llmops(*args: str, expect: int = 0, quiet: bool = False) -> str:
    print(f"$ llmops {shlex.join(args)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "llmops", *args], env=ENV, text=True, capture_output=True)
    if not quiet:
        sys.stdout.write(done.stdout)
    if done.returncode != expect:
        sys.stdout.write(done.stdout if quiet else "")
        sys.stderr.write(done.stderr)
        raise SystemExit(f"demo step failed (exit {done.returncode}): llmops {shlex.join(args)}")
    return done.stdout


def score_line(report: str, metric: str) -> str:
    return next((line for line in report.splitlines() if f"`{metric}`" in line), "(missing)")


def main() -> None:
    shutil.rmtree(HOME, ignore_errors=True)
    step("1. Create the embedded home (SQLite + artifact store) and migrate it")
    llmops("init")

    step("2. Data: synthesise a support-desk task, split it by prompt, and make a shifted domain")
    llmops("data", "synth", "intent", "--name", "intent", "--n", "4000", "--seed", "0")
    llmops("data", "transform", "intent", "dedup-exact", "--name", "intent-clean")
    llmops("data", "split", "intent-clean", "--key", "prompt", "--seed", "0")
    llmops(
        "data",
        "synth",
        "intent",
        "--name",
        "intent-shifted",
        "--n",
        "300",
        "--seed",
        "7",
        "--domain",
        "shifted",
    )
    llmops("data", "show", "intent-clean-train")

    step("3. Train a tokenizer and a small Llama from the recipe (a few minutes on 2 cores)")
    recipe = HOME / "demo-intent.yaml"
    recipe.write_text(
        RECIPE.read_text()
        .replace("intent-train", "intent-clean-train")
        .replace("intent-validation", "intent-clean-validation")
    )
    llmops("train", "run", str(recipe), "--threads", "2")
    llmops("models", "alias", "set", "demo-intent", "production", "1", "--reason", "first release")

    step("4. Evaluate on the held-out split (gated) and on the shifted domain")
    suite = HOME / "intent-suite.yaml"
    suite.write_text((SUITES / "intent-suite.yaml").read_text().replace("intent-test", "intent-clean-test"))
    held_out = llmops(
        "eval",
        "run",
        str(suite),
        "--model",
        "demo-intent@production",
        "--markdown",
        str(HOME / "eval-report.md"),
    )
    shifted = llmops(
        "eval",
        "run",
        str(SUITES / "intent-shifted-suite.yaml"),
        "--model",
        "demo-intent@production",
        quiet=True,
    )
    print("held-out exact match: " + score_line(held_out, "exact_match"))
    print("shifted  exact match: " + score_line(shifted, "exact_match"))

    step("5. Registry: the version, its lineage and its model card")
    llmops("models", "show", "demo-intent@production")
    llmops("models", "lineage", "demo-intent@production")
    llmops("models", "card", "demo-intent@production")

    step("6. The audit log records every change and verifies its hash chain")
    llmops("audit", "verify")

    step("Not built yet (coming in later stages)")
    for item in NOT_YET:
        print(f"  - {item}")


if __name__ == "__main__":
    main()
