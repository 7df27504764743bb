"""Encoder against decoder on the demo's intent task: accuracy against exact match, and requests/s.

One run, in a store under ``--work`` (shared with ``distill.py``: its teacher is reused when it is
there): synthesise the intent task and split it (``llmops data synth intent``, ``data split``),
train the decoder (the scaled demo recipe of ``distill.py``, kind pretrain) and the encoder
classifier (``recipes/demo-intent-encoder.yaml``, kind encoder) through ``llmops train run``, then
serve both with ``llmops replica --threads N`` (subprocesses, the same torch threads for both) and,
in ``--rounds`` rounds alternating decoder then encoder, send every held-out prompt (``--passes``
times) from the same asyncio client at the same concurrency, in
batches of ``--batch`` prompts per HTTP request (a list ``prompt``, a list ``input``): the decoder
through ``/v1/completions`` (greedy, at most 32 tokens; the engine batches the sequences of all
requests in flight), the encoder through ``/v1/classify`` (the backend runs the texts of the
requests waiting in one forward pass). Requests/s counts classified prompts (one prompt is one
classification request, whichever way it was sent); HTTP requests/s is that over ``--batch``.
Quality is scored on the answers served: the decoder's exact match (reply, whitespace-stripped,
equals the reference) and the encoder's accuracy (label equals the reference). Prints both with
their ratio; goal: accuracy within 2 points of the decoder's exact match at >= 5x its requests/s.

    PYTHONPATH=src:. python bench/optimise/encoder.py --threads 1 --concurrency 4 --batch 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import distill  # the sibling bench script: the decoder recipe, the CLI runner, the held-out rows

ENCODER_RECIPE = distill.ROOT / "src" / "llmops" / "train" / "recipes" / "demo-intent-encoder.yaml"
DECODER, ENCODER = "demo-intent@1", "demo-intent-encoder@1"
READY_TIMEOUT_S = 180


def prepare(work: Path, threads: int, rows: int, steps: int, batch: int) -> dict[str, float]:
    """Data, decoder and encoder in the store under ``work`` (each skipped when already there)."""
    from llmops.registry import Registry
    from llmops.store.home import open_home

    names = {m.name for m in Registry.from_home(open_home()).list_models()}
    timings: dict[str, float] = {}
    if "demo-intent" not in names:
        distill.cli("data", "synth", "intent", "--name", "intent", "--n", str(rows), "--seed", "0")
        distill.cli("data", "split", "intent", "--key", "prompt")
        recipe = work / "decoder.yaml"
        recipe.write_text(distill.TEACHER_RECIPE.replace("STEPS", str(steps)).replace("BATCH", str(batch)))
        start = time.perf_counter()
        distill.cli("train", "run", recipe, "--threads", str(threads))
        timings["decoder_train_s"] = time.perf_counter() - start
    if "demo-intent-encoder" not in names:
        start = time.perf_counter()
        distill.cli("train", "run", ENCODER_RECIPE, "--threads", str(threads))
        timings["encoder_train_s"] = time.perf_counter() - start
    return timings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """What one model answered on the held-out rows, and how fast, summed over the rounds."""

    correct: int = 0
    requests: int = 0  # prompts
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # of HTTP requests

    @property
    def quality(self) -> float:
        return self.correct / self.requests

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000


Request = Callable[[httpx.AsyncClient, list[str]], Any]
Answers = Callable[[dict[str, Any]], list[str]]


@dataclass(frozen=True)
class Model:
    """A served model and how to ask it."""

    url: str
    ask: Request
    answers: Answers


async def _load(model: Model, rows: list[dict[str, Any]], args: argparse.Namespace, served: Served) -> None:
    """Send ``rows`` in batches of ``--batch`` from ``--concurrency`` workers; add to ``served``."""
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    batches = [rows[i : i + args.batch] for i in range(0, len(rows), args.batch)]
    async with httpx.AsyncClient(base_url=model.url, timeout=300, limits=limits) as client:
        for batch in batches[: args.warmup]:
            (await model.ask(client, [row["prompt"] for row in batch])).raise_for_status()
        queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
        for batch in batches:
            queue.put_nowait(batch)

        async def worker() -> None:
            while not queue.empty():
                batch = queue.get_nowait()
                sent = time.perf_counter()
                response = await model.ask(client, [row["prompt"] for row in batch])
                response.raise_for_status()
                served.latencies.append(time.perf_counter() - sent)
                got = model.answers(response.json())
                served.correct += sum(
                    a.strip() == r["completion"].strip() for a, r in zip(got, batch, strict=True)
                )

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        served.seconds += time.perf_counter() - start
        served.requests += len(rows)


@contextmanager
def replica(ref: str, args: argparse.Namespace) -> Iterator[str]:
    """``llmops replica --model REF --threads N`` in a subprocess until the block ends; yields its URL."""
    port = _free_port()
    command = [sys.executable, "-m", "llmops", "replica", "--model", ref, "--port", str(port),
               "--threads", str(args.threads), "--served-model-name", "m",
               "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(command, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def measure(rows: list[dict[str, Any]], args: argparse.Namespace) -> tuple[Served, Served]:
    """Both replicas up; each round sends every row to the decoder, then to the encoder, so a change
    in the machine's load hits both alike."""
    decoder, encoder = Served(), Served()
    with replica(DECODER, args) as decoder_url, replica(ENCODER, args) as encoder_url:
        arms = (
            (Model(decoder_url, _complete, _replies), decoder),
            (Model(encoder_url, _classify, _labels), encoder),
        )
        for _ in range(args.rounds):
            for model, served in arms:
                asyncio.run(_load(model, rows, args, served))
    return decoder, encoder


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the replica exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the replica at {url} was not ready in {READY_TIMEOUT_S} s")


def _complete(client: httpx.AsyncClient, prompts: list[str]) -> Any:
    body = {"model": "m", "prompt": prompts, "max_tokens": 32, "temperature": 0}
    return client.post("/v1/completions", json=body)


def _replies(body: dict[str, Any]) -> list[str]:
    return [choice["text"] for choice in sorted(body["choices"], key=lambda c: c["index"])]


def _classify(client: httpx.AsyncClient, prompts: list[str]) -> Any:
    return client.post("/v1/classify", json={"model": "m", "input": prompts})


def _labels(body: dict[str, Any]) -> list[str]:
    return [item["label"] for item in sorted(body["data"], key=lambda d: d["index"])]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/llmops-bench-optimise"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training and each replica")
    parser.add_argument("--rows", type=int, default=800, help="synthetic intent rows (80%% train)")
    parser.add_argument("--steps", type=int, default=150, help="optimiser steps of the decoder")
    parser.add_argument("--batch-size", type=int, default=8, help="decoder sequences per step")
    parser.add_argument("--concurrency", type=int, default=4, help="HTTP requests in flight, both models")
    parser.add_argument("--batch", type=int, default=16, help="prompts per HTTP request (at most 16)")
    parser.add_argument("--passes", type=int, default=3, help="times each held-out prompt is sent per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, decoder then encoder in each")
    parser.add_argument("--warmup", type=int, default=2, help="HTTP requests sent before timing")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ["LLMOPS_HOME"] = str(args.work / "home")
    import torch

    torch.set_num_threads(args.threads)
    timings = prepare(args.work, args.threads, args.rows, args.steps, args.batch_size)
    held_out = distill.held_out()
    rows = held_out * args.passes
    decoder, encoder = measure(rows, args)
    points = (encoder.quality - decoder.quality) * 100
    speedup = encoder.requests_per_s / decoder.requests_per_s
    goals = {"accuracy within 2 points of exact match": points >= -2.0, "requests/s >= 5x": speedup >= 5.0}
    print(f"\n{len(held_out)} held-out rows x {args.passes} passes x {args.rounds} rounds, "
          f"{args.batch} prompts per HTTP request, {args.concurrency} requests in flight, "
          f"{args.threads} torch thread(s) per replica\n")  # fmt: skip
    print("| | decoder (demo-intent@1) | encoder (demo-intent-encoder@1) | encoder / decoder |")
    print("|---|---:|---:|---:|")
    print(f"| quality on the served answers | EM {decoder.quality:.3f} | accuracy {encoder.quality:.3f} | "
          f"{points:+.1f} points |")  # fmt: skip
    print(f"| requests/s (prompts classified) | {decoder.requests_per_s:.1f} | "
          f"{encoder.requests_per_s:.1f} | {speedup:.2f}x |")  # fmt: skip
    print(f"| HTTP requests/s | {decoder.requests_per_s / args.batch:.2f} | "
          f"{encoder.requests_per_s / args.batch:.2f} | {speedup:.2f}x |")  # fmt: skip
    for name, share in (("p50", 0.5), ("p95", 0.95)):
        slow, fast = decoder.percentile_ms(share), encoder.percentile_ms(share)
        print(f"| {name} latency ms (one HTTP request) | {slow:.1f} | {fast:.1f} | {fast / slow:.3f} |")
    for goal, met in goals.items():
        print(f"goal {goal}: {'met' if met else 'MISSED'}")
    result = {
        "held_out_rows": len(held_out), "passes": args.passes, "concurrency": args.concurrency,
        "batch": args.batch, "rounds": args.rounds,
        "threads": args.threads,
        **{name: {"quality": arm.quality, "requests_per_s": arm.requests_per_s, "prompts": arm.requests,
                  "seconds": arm.seconds, "p50_ms": arm.percentile_ms(0.5), "p95_ms": arm.percentile_ms(0.95)}
           for name, arm in (("decoder", decoder), ("encoder", encoder))},
        "points": points, "speedup": speedup, **timings,
    }  # fmt: skip
    (args.work / "encoder.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
