"""Speculative decoding benchmark: the distilled student drafts for its teacher, single stream.

Uses the teacher and student that ``bench/optimise/distill.py`` registered under ``--work`` (it runs
that preparation first when they are missing). Serves the held-out intent prompts one at a time
(single stream) through the in-process engine, the teacher alone and the teacher with the
student as draft (``speculative: {draft, k}``) in turn per prompt, greedy, and prints decode
tokens/s of both (tokens after the first over the time from the first token to the last), the
speed-up, the acceptance
rate, tokens per verifying step, and whether every reply is identical token for token.

Two workloads: the replies as served (stop at the end-of-reply token, at most 32 tokens) and
64 tokens with the end-of-reply token ignored (the models continue past the reply).

    PYTHONPATH=src:. python bench/optimise/speculative.py --threads 1 --k 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import distill  # the sibling bench script: preparation and the held-out rows


async def _serve(backend: Any, request_id: str, prompt: str, sampling: Any) -> tuple[list[int], float]:
    """Token ids of one reply and its decode seconds (first token to last)."""
    from llmops.engine.types import GenerationRequest

    first = last = 0.0
    ids: list[int] = []
    async for event in backend.generate(GenerationRequest(request_id, sampling, prompt=prompt)):
        if event.token_id is not None:
            last = time.perf_counter()
            first = first or last
            ids.append(event.token_id)
    return ids, last - first


def measure(
    target: Path, draft: Path, prompts: list[str], sampling: Any, threads: int, k: int
) -> dict[str, Any]:
    """Serve every prompt alone on both engines, in turn (the order alternating per prompt), so a
    change in the machine's load hits both arms alike."""
    from llmops.engine.config import EngineConfig
    from llmops.engine.transformers_backend import TransformersBackend

    alone = TransformersBackend(target, EngineConfig(threads=threads))
    drafted = TransformersBackend(
        target, EngineConfig(threads=threads, speculative={"draft": str(draft), "k": k}), model_id="drafted"
    )
    arms = {"alone": alone, "drafted": drafted}
    replies: dict[str, list[list[int]]] = {"alone": [], "drafted": []}
    seconds = {"alone": 0.0, "drafted": 0.0}
    tokens = {"alone": 0, "drafted": 0}

    async def run() -> None:
        for name, backend in arms.items():  # warm-up
            for i, prompt in enumerate(prompts[:4]):
                await _serve(backend, f"warm-{name}-{i}", prompt, sampling)
        for i, prompt in enumerate(prompts):
            order = ["alone", "drafted"] if i % 2 == 0 else ["drafted", "alone"]
            for name in order:
                ids, elapsed = await _serve(arms[name], f"{name}-{i}", prompt, sampling)
                replies[name].append(ids)
                if len(ids) > 1:
                    seconds[name] += elapsed
                    tokens[name] += len(ids) - 1
        for backend in arms.values():
            await backend.shutdown()

    asyncio.run(run())
    stats = drafted.stats()
    return {
        "alone_tokens_per_s": tokens["alone"] / seconds["alone"],
        "draft_tokens_per_s": tokens["drafted"] / seconds["drafted"],
        "identical": replies["alone"] == replies["drafted"],
        "decode_tokens": tokens["alone"],
        "acceptance": stats.spec_accepted_tokens_total / stats.spec_proposed_tokens_total,
        "tokens_per_step": stats.spec_emitted_tokens_total / stats.spec_verifications_total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/llmops-bench-optimise"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each engine")
    parser.add_argument("--k", type=int, default=4, help="draft tokens per step")
    parser.add_argument("--prompts", type=int, default=60, help="held-out prompts served one by one")
    args = parser.parse_args()
    os.environ["LLMOPS_HOME"] = str(args.work / "home")
    import torch

    from llmops.engine.types import SamplingParams

    torch.set_num_threads(args.threads)
    distill.prepare(args.work, args.threads, 800)
    teacher, student = distill.model_dirs()
    prompts = [row["prompt"] for row in distill.held_out()][: args.prompts]
    workloads = {
        "replies (stop at end of reply, <= 32 tokens)": SamplingParams(max_tokens=32, temperature=0.0),
        "64 tokens, end of reply ignored": SamplingParams(max_tokens=64, temperature=0.0, ignore_eos=True),
    }
    print(
        f"| workload (k={args.k}, {args.threads} threads, {len(prompts)} prompts one at a time) "
        "| target alone tok/s | with draft tok/s | speed-up | acceptance | tokens/step | identical |"
    )
    print("|---|---|---|---|---|---|---|")
    results = {}
    for name, sampling in workloads.items():
        result = measure(teacher, student, prompts, sampling, args.threads, args.k)
        result["speedup"] = result["draft_tokens_per_s"] / result["alone_tokens_per_s"]
        print(
            f"| {name} | {result['alone_tokens_per_s']:.1f} | {result['draft_tokens_per_s']:.1f} | "
            f"{result['speedup']:.2f}x | {result['acceptance']:.2f} | {result['tokens_per_step']:.2f} | "
            f"{result['identical']} |"
        )
        results[name] = result
        met = "met" if result["speedup"] >= 1.5 else "MISSED"
        same = "yes" if result["identical"] else "NO"
        print(f"goal speed-up >= 1.5x ({name}): {met}; greedy identical: {same}")
    (args.work / "speculative.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
