"""Speculative decoding benchmark: the distilled student drafts for its teacher, single stream.

Uses the teacher and student that ``bench/optimise/distill.py`` registered under ``--work`` (it runs
that preparation first when they are missing). Serves the held-out intent prompts one at a time
(single stream) through the in-process engine, the teacher alone and then the teacher with the
student as draft (``speculative: {draft, k}``), greedy, and prints decode tokens/s of both (tokens
after the first over the time from the first token to the last), the speed-up, the acceptance
rate, tokens per verifying step, and whether every reply is identical token for token.

Two workloads: the replies as served (stop at the end-of-reply token, at most 32 tokens) and
64 tokens with the end-of-reply token ignored (the models continue past the reply).

    PYTHONPATH=src:. python bench/optimise/speculative.py --threads 2 --k 4
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


async def _serve_one_by_one(
    backend: Any, prompts: list[str], sampling: Any
) -> tuple[list[list[int]], float, int]:
    """Token ids of each reply, total decode seconds and decode tokens (after each first token)."""
    from llmops.engine.types import GenerationRequest

    replies, decode_s, decode_tokens = [], 0.0, 0
    for i, prompt in enumerate(prompts):
        first = last = None
        ids = []
        async for event in backend.generate(GenerationRequest(f"b{i}", sampling, prompt=prompt)):
            if event.token_id is not None:
                now = time.perf_counter()
                first = first if first is not None else now
                last = now
                ids.append(event.token_id)
        replies.append(ids)
        if first is not None and last is not None and len(ids) > 1:
            decode_s += last - first
            decode_tokens += len(ids) - 1
    return replies, decode_s, decode_tokens


def measure(
    target: Path, draft: Path | None, prompts: list[str], sampling: Any, threads: int, k: int
) -> dict[str, Any]:
    from llmops.engine.config import EngineConfig
    from llmops.engine.transformers_backend import TransformersBackend

    speculative = {"draft": str(draft), "k": k} if draft is not None else None
    config = EngineConfig(threads=threads, speculative=speculative)
    backend = TransformersBackend(target, config)

    async def run() -> tuple[list[list[int]], float, int]:
        await _serve_one_by_one(backend, prompts[:4], sampling)  # warm-up
        try:
            return await _serve_one_by_one(backend, prompts, sampling)
        finally:
            await backend.shutdown()

    before = backend.stats()
    replies, seconds, tokens = asyncio.run(run())
    stats = backend.stats()
    verifications = stats.spec_verifications_total - before.spec_verifications_total
    return {
        "replies": replies,
        "decode_tokens": tokens,
        "decode_tokens_per_s": tokens / seconds if seconds else 0.0,
        "acceptance": stats.spec_accepted_tokens_total / stats.spec_proposed_tokens_total
        if stats.spec_proposed_tokens_total
        else None,
        "tokens_per_step": stats.spec_emitted_tokens_total / verifications if verifications else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/llmops-bench-optimise"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the engine")
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
        alone = measure(teacher, None, prompts, sampling, args.threads, args.k)
        drafted = measure(teacher, student, prompts, sampling, args.threads, args.k)
        speedup = drafted["decode_tokens_per_s"] / alone["decode_tokens_per_s"]
        identical = alone["replies"] == drafted["replies"]
        print(
            f"| {name} | {alone['decode_tokens_per_s']:.1f} | {drafted['decode_tokens_per_s']:.1f} | "
            f"{speedup:.2f}x | {drafted['acceptance']:.2f} | {drafted['tokens_per_step']:.2f} | {identical} |"
        )
        results[name] = {
            "alone_tokens_per_s": alone["decode_tokens_per_s"],
            "draft_tokens_per_s": drafted["decode_tokens_per_s"],
            "speedup": speedup,
            "acceptance": drafted["acceptance"],
            "tokens_per_step": drafted["tokens_per_step"],
            "identical": identical,
            "decode_tokens": alone["decode_tokens"],
        }
        print(
            f"goal speed-up >= 1.5x ({name}): {'met' if speedup >= 1.5 else 'MISSED'}; "
            f"greedy identical: {'yes' if identical else 'NO'}"
        )
    (args.work / "speculative.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
