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
WORK = HOME / "work"
ENV = {**os.environ, "LLMOPS_HOME": str(HOME), "LLMOPS_ACTOR": "demo"}

NOT_YET = [
    "serving behind an OpenAI-compatible API (engine with continuous batching)",
    "the gateway (keys, limits, budgets, routing, canary)",
    "monitoring (metrics, drift, alerts) and the maintenance loop",
]


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def llmops(*args: str) -> str:
    print(f"$ llmops {shlex.join(args)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "llmops", *args], env=ENV, text=True, capture_output=True)
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"demo step failed: llmops {shlex.join(args)}")
    return done.stdout


def make_model_from_config(path: Path) -> None:
    """A small Llama built from a config (no hub), saved as safetensors."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    LlamaForCausalLM(config).save_pretrained(path, safe_serialization=True)


def main() -> None:
    shutil.rmtree(HOME, ignore_errors=True)
    WORK.mkdir(parents=True)
    step("1. Create the embedded home (SQLite + artifact store) and migrate it")
    llmops("init")

    step("2. Build a model from a config and register it")
    make_model_from_config(WORK / "model")
    llmops(
        "models",
        "register",
        str(WORK / "model"),
        "--name",
        "demo-model",
        "--description",
        "A small Llama built from a config.",
        "--reason",
        "demo",
    )
    llmops("models", "alias", "set", "demo-model", "production", "1", "--reason", "first release")
    llmops("models", "show", "demo-model@production")
    llmops("models", "lineage", "demo-model@production")
    llmops("models", "card", "demo-model@production")

    step("3. The audit log records every change and verifies its hash chain")
    llmops("audit", "list")
    llmops("audit", "verify")

    step("Not built yet (coming in later stages)")
    for item in NOT_YET:
        print(f"  - {item}")


if __name__ == "__main__":
    main()
