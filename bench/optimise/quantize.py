"""Quantisation benchmark: decode speed and weight memory on a >= 50M-parameter Llama, exact match
on the demo suite, for int8-dynamic, int8-weight-only and int4-weight-only against fp32.

One run, two models, because a 50M-parameter model cannot be trained on the intent task on a
shared CPU in a benchmark's time, and decode speed and memory do not depend on what the weights
learnt:

- speed and memory: a Llama built from config (random weights, ``--hidden``/``--layers``/
  ``--intermediate``, default 13 layers of 512, 51M parameters) with the demo teacher's
  tokenizer, quantised with ``llmops.train.quantization`` and served by the in-process engine
  (``evals.serving_bench``: every arm on the same prompts, single stream with the arms alternating
  per prompt, then ``--concurrency`` requests at once). Decode tokens/s single stream, tokens/s at
  ``--concurrency``, p95 TTFT and weight memory, as ratios against fp32 measured in the same run.
- quality: the demo teacher (``bench/optimise/distill.py``'s recipe, trained on the synthetic
  intent task; reused from ``--work`` when there) quantised through ``llmops models quantize``;
  exact match of the greedy reply on the held-out split through the engine, fp32 and each method.

    PYTHONPATH=src:. python bench/optimise/quantize.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import distill  # the sibling bench script: the demo data, teacher recipe and exact match

METHODS = ("int8-dynamic", "int8-weight-only", "int4-weight-only")
GOALS = {"int8": {"decode": 1.5, "memory": 0.3, "em_loss": 0.01}, "int4": {"memory": 0.2}}


def prepare_teacher(work: Path, threads: int, rows: int, steps: int, batch: int) -> None:
    """Data and the demo teacher in the store under ``work`` (skipped when already there)."""
    from llmops.registry import Registry
    from llmops.store.home import open_home

    if "demo-intent" in {m.name for m in Registry.from_home(open_home()).list_models()}:
        return
    distill.cli("data", "synth", "intent", "--name", "intent", "--n", str(rows), "--seed", "0")
    distill.cli("data", "split", "intent", "--key", "prompt")
    recipe = work / "teacher.yaml"
    recipe.write_text(distill._sized(distill.TEACHER_RECIPE, steps, 0, batch))
    distill.cli("train", "run", recipe, "--threads", str(threads))


def build_large(work: Path, tokenizer_dir: Path, hidden: int, layers: int, intermediate: int) -> Path:
    """A Llama of about 50M parameters (random weights, fixed seed) with the teacher's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = work / f"large-{hidden}x{layers}"
    if (out / "config.json").is_file():
        return out
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 128,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    for item in tokenizer_dir.iterdir():  # tokenizer, input format, generation config
        if item.is_file() and item.name not in {"config.json", "model.safetensors"}:
            (out / item.name).write_bytes(item.read_bytes())
    return out


def quantized_dirs(source: Path, work: Path) -> dict[str, Path]:
    from transformers import AutoModelForCausalLM

    from llmops.train.quantization import quantize_model, save_quantized

    dirs = {"fp32": source}
    for method in METHODS:
        out = work / f"{source.name}-{method}"
        if not (out / "config.json").is_file():
            model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True)
            save_quantized(model, quantize_model(model, method, group_size=32), source, out)
        dirs[method] = out
    return dirs


def measure_speed(
    dirs: dict[str, Path], prompts: list[str], threads: int, requests: int, concurrency: int, tokens: int
) -> dict[str, Any]:
    from llmops.evals.serving_bench import ServingSettings, measure_serving

    settings = ServingSettings(requests, concurrency, tokens, threads)
    measured = measure_serving(list(dirs.values()), prompts, settings)
    return {name: m.as_dict() for name, m in zip(dirs, measured, strict=True)}


def measure_quality(threads: int) -> dict[str, float]:
    from llmops.registry import Registry
    from llmops.store.home import open_home

    registry = Registry.from_home(open_home())
    rows = distill.held_out()
    names = {m.name for m in registry.list_models()}
    scores = {"fp32": distill.exact_match(registry.local_path(distill.TEACHER), rows, threads)}
    for method in METHODS:
        if f"demo-intent-{method}" not in names:
            distill.cli("models", "quantize", distill.TEACHER, "--method", method)
        scores[method] = distill.exact_match(registry.local_path(f"demo-intent-{method}@1"), rows, threads)
    return scores


def parameters(model_dir: Path) -> int:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    return sum(p.numel() for p in model.parameters())


def table(speed: dict[str, Any], quality: dict[str, float], concurrency: int) -> list[str]:
    base = speed["fp32"]
    lines = [
        f"| method | decode tok/s single stream (ratio) | tok/s at {concurrency} concurrent (ratio) "
        "| p95 TTFT ratio | weight memory (ratio) | exact match (delta, points) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in speed.items():
        em_delta = 100 * (quality[name] - quality["fp32"])
        decode = row["decode_tokens_per_s"]
        batch = row["concurrent_tokens_per_s"]
        lines.append(
            f"| {name} | {decode:.1f} ({decode / base['decode_tokens_per_s']:.2f}x) "
            f"| {batch:.1f} ({batch / base['concurrent_tokens_per_s']:.2f}x) "
            f"| {row['ttft_p95_s'] / base['ttft_p95_s']:.2f}x "
            f"| {row['weight_bytes'] / 2**20:.1f} MiB ({row['weight_bytes'] / base['weight_bytes']:.3f}x) "
            f"| {quality[name]:.3f} ({em_delta:+.1f}) |"
        )
    return lines


def goals(speed: dict[str, Any], quality: dict[str, float]) -> dict[str, bool]:
    base = speed["fp32"]
    out = {}
    for method in METHODS:
        row = speed[method]
        memory = row["weight_bytes"] / base["weight_bytes"]
        if method.startswith("int8"):
            decode = row["decode_tokens_per_s"] / base["decode_tokens_per_s"]
            out[f"{method}: decode >= 1.5x ({decode:.2f}x)"] = decode >= GOALS["int8"]["decode"]
            out[f"{method}: weight memory <= 0.3x ({memory:.3f}x)"] = memory <= GOALS["int8"]["memory"]
            loss = quality["fp32"] - quality[method]
            out[f"{method}: exact match loss <= 1 point ({100 * loss:+.1f})"] = (
                loss <= GOALS["int8"]["em_loss"]
            )
        else:
            out[f"{method}: weight memory <= 0.2x ({memory:.3f}x)"] = memory <= GOALS["int4"]["memory"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/llmops-bench-quantize"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training and the engines")
    parser.add_argument("--rows", type=int, default=800, help="synthetic intent rows (80%% train)")
    parser.add_argument("--steps", type=int, default=150, help="optimiser steps of the demo teacher")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=13)
    parser.add_argument("--intermediate", type=int, default=2048)
    parser.add_argument("--requests", type=int, default=8, help="single-stream requests per arm")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--max-tokens", type=int, default=64, help="tokens per request (end of reply ignored)"
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ["LLMOPS_HOME"] = str(args.work / "home")
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    prepare_teacher(args.work, args.threads, args.rows, args.steps, args.batch_size)
    from llmops.registry import Registry
    from llmops.store.home import open_home

    tokenizer_dir = Registry.from_home(open_home()).local_path(distill.TEACHER)
    large = build_large(args.work, tokenizer_dir, args.hidden, args.layers, args.intermediate)
    dirs = quantized_dirs(large, args.work)
    prompts = [r["prompt"] for r in distill.held_out()]
    speed = measure_speed(dirs, prompts, args.threads, args.requests, args.concurrency, args.max_tokens)
    quality = measure_quality(args.threads)
    result = {
        "parameters": parameters(large),
        "threads": args.threads,
        "speed": speed,
        "quality": quality,
        "held_out_rows": len(prompts),
        "seconds": time.perf_counter() - started,
        "load_average": os.getloadavg(),
    }
    print(
        f"speed and memory: Llama {args.layers} layers of {args.hidden} "
        f"({result['parameters']:,} parameters, random weights), "
        f"{args.threads} thread(s), {args.requests} single-stream requests and "
        f"{args.concurrency} concurrent, {args.max_tokens} tokens each; exact match: the demo teacher "
        f"on {len(prompts)} held-out rows"
    )
    print("\n".join(table(speed, quality, args.concurrency)))
    for goal, met in goals(speed, quality).items():
        print(f"goal {goal}: {'met' if met else 'MISSED'}")
    (args.work / "quantize.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
