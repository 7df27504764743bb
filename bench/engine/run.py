"""Engine benchmark: our continuous-batching engine against transformers on the CPU.

    .venv/bin/python bench/engine/run.py [--requests 32] [--new-tokens 64] [--repeats 3]

Model: random Llama, hidden 256, intermediate 1536, 6 layers, 8 heads, vocab 4096 (10.75M params),
fp32. Workload: ``--requests`` prompts of 16-128 random tokens, ``--new-tokens`` greedy tokens each,
EOS off. Columns: ours (2 threads); transformers ``generate`` one request at a time (1 thread); a
static left-padded batch of all requests (2 threads); transformers' continuous batching
(``generate_batch``, cache sized by hand, 2 threads). Throughput runs are interleaved and repeated
with fresh prompts, and the best of each is kept, to damp noise from other work on the machine.
Then: p95 TTFT under Poisson arrivals at half our saturation rate (ours vs transformers' continuous
batching), prefix caching with a shared 512-token system prompt (mean TTFT on vs off), and our
achieved model FLOP/s against a large GEMM. Prints markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import baselines
import ours
from workload import (
    FlopCount,
    build_model_dir,
    gemm_flops_per_second,
    load_reference_model,
    poisson_arrivals,
    random_prompts,
)


@dataclass
class Throughput:
    seconds: float
    tokens: int
    prompts: list[list[int]]

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--poisson-requests", type=int, default=64)
    parser.add_argument("--prefix-requests", type=int, default=16)
    parser.add_argument("--skip-sequential", action="store_true", help="skip the slow one-at-a-time column")
    return parser.parse_args()


def best(runs: list[Throughput]) -> Throughput:
    return min(runs, key=lambda run: run.seconds)


def throughput_table(args: argparse.Namespace, model_dir: Path, reference: object) -> dict[str, Throughput]:
    backend = ours.make_backend(model_dir)
    n, new = args.requests, args.new_tokens
    # Warm every path once (oneDNN picks and caches kernels per shape on first use).
    warm = random_prompts(n, 16, 128, seed=1)
    ours.throughput_run(backend, warm, 8)
    baselines.continuous_batching_generate(reference, warm, 8)
    baselines.static_batch_generate(reference, warm[:4], 4)
    runs: dict[str, list[Throughput]] = {"ours": [], "cb": [], "static": []}
    if not args.skip_sequential:
        runs["sequential"] = []
    for repeat in range(args.repeats):
        prompts = random_prompts(n, 16, 128, seed=100 + repeat)
        torch.set_num_threads(2)
        runs["ours"].append(Throughput(ours.throughput_run(backend, prompts, new), n * new, prompts))
        seconds = baselines.continuous_batching_generate(reference, prompts, new)
        runs["cb"].append(Throughput(seconds, n * new, prompts))
        runs["static"].append(
            Throughput(baselines.static_batch_generate(reference, prompts, new), n * new, prompts)
        )
        if "sequential" in runs:
            seconds = baselines.sequential_generate(reference, prompts, new)
            runs["sequential"].append(Throughput(seconds, n * new, prompts))
        print(
            f"  repeat {repeat}: "
            + ", ".join(f"{k} {v[-1].tokens_per_second:.0f} tok/s" for k, v in runs.items())
        )
    asyncio_shutdown(backend)
    return {name: best(values) for name, values in runs.items()}


def asyncio_shutdown(backend: ours.TransformersBackend) -> None:
    import asyncio

    asyncio.run(backend.shutdown())


def ttft_under_poisson(
    args: argparse.Namespace, model_dir: Path, reference: object, rate: float
) -> dict[str, list[float]]:
    """Per-request TTFTs of both systems on the same arrivals; alternated twice, lower p95 kept."""
    prompts = random_prompts(args.poisson_requests, 16, 128, seed=200)
    arrivals = poisson_arrivals(args.poisson_requests, rate, seed=201)
    backend = ours.make_backend(model_dir)
    ours.throughput_run(backend, random_prompts(8, 16, 128, seed=2), 4)  # warm
    runs: dict[str, list[list[float]]] = {"ours": [], "cb": []}
    for attempt in range(2):
        torch.set_num_threads(2)
        # A fresh prefix per attempt, so the second run of ours gets no prefix-cache hits.
        fresh = [[4 + attempt, *p] for p in prompts]
        runs["ours"].append(ours.poisson_ttft(backend, fresh, arrivals, args.new_tokens))
        runs["cb"].append(baselines.continuous_batching_ttft(reference, fresh, arrivals, args.new_tokens))
    asyncio_shutdown(backend)
    return {name: min(values, key=p95) for name, values in runs.items()}


def prefix_caching_ttft(args: argparse.Namespace, model_dir: Path) -> dict[str, float]:
    system = random_prompts(1, 512, 512, seed=300)[0]
    suffixes = random_prompts(args.prefix_requests, 16, 32, seed=301)
    prompts = [system + suffix for suffix in suffixes]
    means = {}
    for caching in (True, False):
        backend = ours.make_backend(model_dir, prefix_caching=caching)
        ours.sequential_ttft(backend, [[*system, 5, 6, 7]], 2)  # warm (and, with caching, fill the cache)
        means["on" if caching else "off"] = statistics.mean(ours.sequential_ttft(backend, prompts, 8))
        asyncio_shutdown(backend)
    return means


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


NAMES = {
    "ours": "ours (llmops engine)",
    "sequential": "transformers generate, one at a time",
    "static": "transformers generate, static batch (left padding)",
    "cb": "transformers continuous batching (generate_batch)",
}
TARGETS = {"cb": ">= 1.3x", "sequential": ">= 5x", "static": ">= 1.0x", "ours": ""}


def report_throughput(args: argparse.Namespace, throughput: dict[str, Throughput]) -> None:
    mine = throughput["ours"]
    print(f"\n### Throughput, {args.requests} concurrent requests x {args.new_tokens} new tokens\n")
    print("| system | threads | seconds | tokens/s | ours / system | target |")
    print("|---|---|---|---|---|---|")
    for key in ("ours", "sequential", "static", "cb"):
        if key in throughput:
            run = throughput[key]
            ratio = mine.tokens_per_second / run.tokens_per_second
            cells = [NAMES[key], 1 if key == "sequential" else 2, f"{run.seconds:.2f}"]
            cells += [f"{run.tokens_per_second:.0f}", f"{ratio:.2f}x", TARGETS[key]]
            print("| " + " | ".join(str(c) for c in cells) + " |")


def report_ttft(args: argparse.Namespace, ttft: dict[str, list[float]], rate: float) -> None:
    print(f"\n### TTFT under Poisson arrivals at {rate:.2f} req/s (half our saturation rate)\n")
    print(
        f"{args.poisson_requests} requests, {args.new_tokens} new tokens each, same arrival times for both.\n"
    )
    print("| system | p50 TTFT (ms) | p95 TTFT (ms) |")
    print("|---|---|---|")
    for key, label in (("ours", "ours"), ("cb", "transformers continuous batching")):
        values = ttft[key]
        print(f"| {label} | {1000 * statistics.median(values):.0f} | {1000 * p95(values):.0f} |")
    print(f"\np95 TTFT transformers CB / ours: {p95(ttft['cb']) / p95(ttft['ours']):.1f}x (target >= 1x)")


def report_prefix(prefix: dict[str, float]) -> None:
    print(
        "\n### Prefix caching: shared 512-token system prompt + 16-32 token suffix, one request at a time\n"
    )
    print("| prefix caching | mean TTFT (ms) |")
    print("|---|---|")
    print(f"| off | {1000 * prefix['off']:.1f} |")
    print(f"| on | {1000 * prefix['on']:.1f} |")
    print(f"\nmean TTFT off / on: {prefix['off'] / prefix['on']:.1f}x (target >= 3x)")


ROOFLINE_GOAL = 0.40  # model FLOP/s in-process against a large GEMM on the same threads


def report_compute(args: argparse.Namespace, mine: Throughput, gemm: float) -> None:
    flops = FlopCount.of_generation([len(p) for p in mine.prompts], args.new_tokens).total / mine.seconds
    print(f"\n### Compute\n\nours: {flops / 1e9:.2f} GFLOP/s of model FLOPs (best throughput run)")
    share = flops / gemm
    print(f"large fp32 GEMM (2048^3, 2 threads): {gemm / 1e9:.1f} GFLOP/s; ours / GEMM: {share:.1%}")
    print(f"\nshare of the GEMM roofline in-process: {share:.1%} (goal >= {ROOFLINE_GOAL:.0%}: ", end="")
    print("met)" if share >= ROOFLINE_GOAL else "not met)")


def machine_load() -> str:
    """Load average and CPU pressure (share of time some task waited for a CPU, last 60 s)."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        some = Path("/proc/pressure/cpu").read_text().split("\n")[0]
        pressure = some.split()[2].split("=")[1]
    except (OSError, IndexError):
        pressure = "n/a"
    return f"load average {load}, CPU pressure avg60 {pressure}%"


def main() -> None:
    args = parse_args()
    load_before = machine_load()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model_dir(Path(tmp) / "bench-llama")
        reference = load_reference_model(model_dir)
        start = time.perf_counter()
        print("throughput ...")
        throughput = throughput_table(args, model_dir, reference)
        rate = args.requests / throughput["ours"].seconds / 2
        print(f"TTFT under Poisson arrivals at {rate:.2f} req/s ...")
        ttft = ttft_under_poisson(args, model_dir, reference, rate)
        print("prefix caching ...")
        prefix = prefix_caching_ttft(args, model_dir)
        gemm = gemm_flops_per_second(threads=2)
        print(f"(benchmark took {time.perf_counter() - start:.0f}s)")
    load_after = machine_load()
    report_throughput(args, throughput)
    report_ttft(args, ttft, rate)
    report_prefix(prefix)
    report_compute(args, throughput["ours"], gemm)
    print(f"\nmachine load before: {load_before}; after: {load_after}")


if __name__ == "__main__":
    main()
