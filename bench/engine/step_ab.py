"""A/B of engine settings on the benchmark model, in one process: wall and CPU time, decode step, attention.

    PYTHONPATH=src:. .venv/bin/python bench/engine/step_ab.py --threads 1 --repeats 5 \\
        --variant decode_kernel=true --variant decode_kernel=false

Each ``--variant`` is comma-separated ``EngineConfig`` overrides on top of ``bench/engine/ours.py``'s
settings. All engines are built first, then the runs are interleaved (variant A, B, A, B, ...) with
the same prompts per repeat: 32 requests of 16-128 random tokens, 64 greedy tokens each, driven by
``LLMEngine.step`` directly (no asyncio, no detokenisation). Reported per variant: the best wall and
CPU (process) time of a run, and, on a separate pass after prefill, the mean decode step and the time
spent inside the paged attention function. CPU time with ``--threads 1`` is the steadiest figure on a
shared machine. The token ids of every variant must agree with the first variant's (checked), so a
setting that changes greedy output fails the run unless ``--allow-token-differences`` is given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AttentionInterface

import llmops.engine.paged_attention as paged
from llmops.engine.config import EngineConfig
from llmops.engine.llm_engine import LLMEngine
from llmops.engine.sequence import Sequence
from llmops.engine.transformers_backend import load_causal_lm
from llmops.engine.types import SamplingParams

sys.path.insert(0, str(Path(__file__).parent))
from ours import ENGINE_SETTINGS
from workload import build_model_dir, random_prompts

ATTENTION_SECONDS = [0.0]


def timed_attention(*args: Any, **kwargs: Any) -> Any:
    start = time.perf_counter()
    try:
        return paged.paged_attention_forward(*args, **kwargs)
    finally:
        ATTENTION_SECONDS[0] += time.perf_counter() - start


@dataclass
class Result:
    wall: float = float("inf")
    cpu: float = float("inf")
    decode_ms: list[float] = field(default_factory=list)
    attention_ms: list[float] = field(default_factory=list)
    tokens: list[dict[str, list[int]]] = field(default_factory=list)


def parse_variant(text: str) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        overrides[key] = {"true": True, "false": False}.get(value.lower(), value)
    return overrides


def submit(engine: LLMEngine, prompts: list[list[int]], tag: str, new_tokens: int) -> None:
    sampling = SamplingParams(max_tokens=new_tokens, temperature=0.0, ignore_eos=True)
    for i, prompt in enumerate(prompts):
        engine.add(Sequence(request_id=f"{tag}-{i}", prompt_token_ids=list(prompt), sampling=sampling))


def timed_run(engine: LLMEngine, prompts: list[list[int]], tag: str, new_tokens: int, result: Result) -> None:
    submit(engine, prompts, tag, new_tokens)
    tokens: dict[str, list[int]] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    while engine.has_work():
        for out in engine.step():
            if out.token_id is not None:
                tokens.setdefault(out.request_id.split("-")[1], []).append(out.token_id)
    result.wall = min(result.wall, time.perf_counter() - wall)
    result.cpu = min(result.cpu, time.process_time() - cpu)
    result.tokens.append(tokens)


def decode_pass(
    engine: LLMEngine, prompts: list[list[int]], tag: str, result: Result, steps: int = 40
) -> None:
    """Mean decode step and attention time once every prompt is prefilled."""
    submit(engine, prompts, tag, steps + 16)
    for _ in range(10):
        engine.step()
    ATTENTION_SECONDS[0] = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        engine.step()
    result.decode_ms.append((time.perf_counter() - start) / steps * 1000)
    result.attention_ms.append(ATTENTION_SECONDS[0] / steps * 1000)
    while engine.has_work():
        engine.step()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", action="append", required=True, help="EngineConfig overrides: k=v,k=v")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument(
        "--allow-token-differences",
        action="store_true",
        help="report variants whose greedy tokens differ (e.g. bfloat16 paths that round differently)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = build_model_dir(Path(tempfile.mkdtemp(prefix="llmops-step-ab-")))
    engines: dict[str, LLMEngine] = {}
    for variant in args.variant:
        config = EngineConfig(**{**ENGINE_SETTINGS, "threads": args.threads, **parse_variant(variant)})
        engines[variant] = LLMEngine(load_causal_lm(model_dir, config.placement()), config, frozenset())
        submit(engines[variant], random_prompts(4, 16, 32, seed=999), "warm", 8)
        while engines[variant].has_work():
            engines[variant].step()
    # Loading a model registers the plain function; time it from here on.
    AttentionInterface.register(paged.ATTENTION_NAME, timed_attention)
    results = {variant: Result() for variant in engines}
    for repeat in range(args.repeats):
        prompts = random_prompts(args.requests, 16, 128, seed=repeat)
        for variant, engine in engines.items():
            timed_run(engine, prompts, f"r{repeat}", args.new_tokens, results[variant])
            decode_pass(engine, prompts, f"d{repeat}", results[variant])
    report(results, args)


def report(results: dict[str, Result], args: argparse.Namespace) -> None:
    tokens = args.requests * args.new_tokens
    reference = next(iter(results.values())).tokens
    shape = f"{args.requests} requests x {args.new_tokens} tokens"
    print(f"{args.threads} thread(s), best of {args.repeats}; {shape}")
    columns = "best wall (s) | tokens/s | best CPU (s) | decode step (ms) | attention (ms/step) | tokens"
    print(f"| variant | {columns} |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for variant, result in results.items():
        same = result.tokens == reference
        if not same and not args.allow_token_differences:
            raise SystemExit(f"variant {variant!r} generated different tokens than {args.variant[0]!r}")
        decode, attention = min(result.decode_ms), min(result.attention_ms)
        print(
            f"| {variant} | {result.wall:.3f} | {tokens / result.wall:.0f} | {result.cpu:.3f} | "
            f"{decode:.2f} | {attention:.2f} | {'as first' if same else 'differ from first'} |"
        )


if __name__ == "__main__":
    main()
