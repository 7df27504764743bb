"""Decode attention over the paged KV cache: the C++ kernel against gather + SDPA, in one run.

    PYTHONPATH=src:. .venv/bin/python bench/engine/decode_kernel.py [--threads 1,2] [--contexts 64,256,1024]

For each shape (the benchmark model's 8 heads of 32; a Llama-style 32 query / 8 KV heads of 128) and
context length: 32 sequences, one query token each, 16-position blocks scattered at random over a
cache of ``--blocks`` blocks (2,048). ``kernel`` is ``torch.ops.llmops_paged.decode_attention``
reading K/V through the block tables; ``gather + SDPA`` is the engine's fallback (copy each row's
blocks into a contiguous buffer, then one batched ``scaled_dot_product_attention``). Both answers
are compared before timing.
Reported: the best of several timed rounds per call, the K/V bytes read per second by the kernel,
and gather + SDPA / kernel. The caches here stay in the last-level cache between calls, unlike an
engine step, where weights and other layers evict them; the step itself is in ``step_ab.py``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from llmops.engine.paged_kernel import load_decode_kernel

ROWS, BLOCK_SIZE = 32, 16
SHAPES = {"8 heads x 32 (bench model)": (8, 8, 32), "32 / 8 KV heads x 128": (32, 8, 128)}


def best_seconds(fn: Callable[[], torch.Tensor], calls: int, rounds: int) -> float:
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def measure(
    kernel: object, shape: tuple[int, int, int], context: int, args: argparse.Namespace
) -> tuple[float, float, int]:
    """(kernel seconds, gather + SDPA seconds, K/V bytes read) for one call."""
    heads, kv_heads, dim = shape
    width = -(-context // BLOCK_SIZE)
    num_blocks = max(args.blocks, ROWS * width)
    generator = torch.Generator().manual_seed(context)
    keys = torch.randn(num_blocks * BLOCK_SIZE, kv_heads, dim, generator=generator)
    values = torch.randn(num_blocks * BLOCK_SIZE, kv_heads, dim, generator=generator)
    tables = torch.randperm(num_blocks, generator=generator)[: ROWS * width].view(ROWS, width)
    lens = torch.full((ROWS,), context)
    query = torch.randn(ROWS, heads, dim, generator=generator)
    scale = dim**-0.5

    def with_kernel() -> torch.Tensor:
        return kernel(query, keys, values, tables, lens, BLOCK_SIZE, scale)  # type: ignore[operator]

    def with_gather() -> torch.Tensor:
        flat = tables.flatten()
        k = keys.view(num_blocks, BLOCK_SIZE, kv_heads, dim).index_select(0, flat)
        v = values.view(num_blocks, BLOCK_SIZE, kv_heads, dim).index_select(0, flat)
        k = k.view(ROWS, -1, kv_heads, dim)[:, :context].transpose(1, 2)
        v = v.view(ROWS, -1, kv_heads, dim)[:, :context].transpose(1, 2)
        out = F.scaled_dot_product_attention(
            query.unsqueeze(2), k, v, scale=scale, enable_gqa=heads != kv_heads
        )
        return out[:, :, 0]

    torch.testing.assert_close(with_kernel(), with_gather(), rtol=1e-4, atol=1e-4)
    calls = args.calls or max(5, 20_000 // context)
    read = 2 * ROWS * context * kv_heads * dim * keys.element_size()
    kernel_seconds = best_seconds(with_kernel, calls, args.rounds)
    return kernel_seconds, best_seconds(with_gather, calls, args.rounds), read


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--contexts", default="64,256,1024", help="comma-separated context lengths")
    parser.add_argument("--blocks", type=int, default=2048, help="blocks in the cache the tables point into")
    parser.add_argument("--calls", type=int, default=0, help="calls per timed round (0: by context length)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds; the best is reported")
    args = parser.parse_args()
    kernel = load_decode_kernel()
    if kernel is None:
        raise SystemExit("the decode kernel is not available here (no compiler?); see the log above")
    print(f"{ROWS} sequences, blocks of {BLOCK_SIZE}, float32\n")
    print(
        "| shape | threads | context | kernel (us) | K/V read (GB/s) | gather + SDPA (us) | gather / kernel |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for name, (heads, kv_heads, dim) in SHAPES.items():
            for context in (int(c) for c in args.contexts.split(",")):
                ours, gathered, read = measure(kernel, (heads, kv_heads, dim), context, args)
                cells = [name, threads, context, f"{ours * 1e6:.0f}", f"{read / ours / 1e9:.1f}"]
                cells += [f"{gathered * 1e6:.0f}", f"{gathered / ours:.2f}x"]
                print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
