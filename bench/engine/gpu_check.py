"""GPU check: our engine against transformers on one device, with a ~1B-parameter Llama built from config.

    python bench/engine/gpu_check.py                       # on a CUDA machine (bf16)
    python bench/engine/gpu_check.py --device cpu --tiny   # smoke run on the CPU, seconds

Model: a Llama with hidden 2048, intermediate 5632, 16 layers, 32 heads / 8 KV heads, vocab 32000
(0.85B parameters, untied), random weights from a fixed seed, built directly on the device; ``--tiny``
builds hidden 64, 2 layers instead. Nothing is downloaded.

1. Greedy equality: our engine (``LLMEngine`` stepped directly: no HTTP, no detokenisation) against
   transformers' ``generate(do_sample=False)`` on the same weights, each prompt alone and all
   together in one batch; in float32 (exact up to kernel rounding), then in the run's dtype (bf16 on
   CUDA). A difference is reported with transformers' top-2 logit margin where it happens: below
   ``--tie-margin`` it is a near-tie that the dtype's rounding may flip, above it a mismatch (exit 1).
2. Throughput (generated tokens/s) with 1 and ``--requests`` concurrent requests of 64-128 prompt
   tokens and ``--new-tokens`` tokens each: ours; transformers' static left-padded batch
   (``generate``); transformers' continuous batching (``generate_batch``) when it runs here.
3. Decode step time of ours (steps where every sequence decodes) against the memory-bandwidth floor:
   the bytes one decode step must read (every weight but the input embedding table, plus the K/V of
   the batch's contexts) divided by ``--bandwidth-tbps`` (default 4.8 TB/s: the H200's HBM3e).

Prints markdown tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import baselines

from llmops.engine.config import EngineConfig
from llmops.engine.device import Placement, place_module, resolve_placement
from llmops.engine.llm_engine import LLMEngine
from llmops.engine.paged_attention import register_paged_attention
from llmops.engine.sequence import Sequence
from llmops.engine.types import SamplingParams
from llmops.errors import InvalidInput

LARGE = {
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 32000,
}
TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 512,
}
BLOCK_SIZE = 16
_ids = itertools.count()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="auto, cpu, cuda or cuda:N (default cuda)")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), bfloat16, ...")
    parser.add_argument("--tiny", action="store_true", help="a tiny model and workload: a smoke run")
    parser.add_argument("--requests", type=int, default=64, help="concurrent requests of the batch column")
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens per request (128; tiny 8)")
    parser.add_argument("--prompts", type=int, default=4, help="prompts of the greedy-equality check")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per column; the best is kept")
    parser.add_argument("--bandwidth-tbps", type=float, default=4.8, help="memory bandwidth (H200: 4.8)")
    parser.add_argument("--tie-margin", type=float, default=0.05, help="top-2 logit gap of a near-tie")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--skip-cb", action="store_true", help="skip transformers' continuous batching")
    args = parser.parse_args(argv)
    if args.new_tokens is None:
        args.new_tokens = 8 if args.tiny else 128
    return args


# -- model and engine ------------------------------------------------------------------------------


def build_models(tiny: bool, placement: Placement) -> tuple[Any, Any]:
    """(ours, reference): one random Llama in float32 on the device, twice; ours routes its
    attention to the paged cache, the reference keeps SDPA."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **(TINY if tiny else LARGE),
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    with placement.device:
        reference = LlamaForCausalLM(config).float().eval()
    ours = copy.deepcopy(reference)
    ours.set_attn_implementation(register_paged_attention())
    return ours, reference


def make_engine(model: Any, args: argparse.Namespace, dtype: str, longest: int) -> LLMEngine:
    blocks_per_seq = -(-longest // BLOCK_SIZE)
    config = EngineConfig(
        device=args.device,
        dtype=dtype,  # type: ignore[arg-type]
        threads=args.threads,
        block_size=BLOCK_SIZE,
        num_kv_blocks=max(args.requests, args.prompts) * blocks_per_seq + 8,
        max_num_seqs=max(args.requests, args.prompts),
        max_num_batched_tokens=max(2048, args.requests),
        max_model_len=longest,
        enable_prefix_caching=False,
    )
    return LLMEngine(model, config)


@dataclass
class EngineRun:
    seconds: float
    outputs: list[list[int]]
    # (seconds, batch size, summed context length) of each step where every sequence decoded
    decode_steps: list[tuple[float, int, int]] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(len(out) for out in self.outputs)


def run_engine(engine: LLMEngine, prompts: list[list[int]], new_tokens: int) -> EngineRun:
    """Submit every prompt at once and step until all are done (greedy, EOS off)."""
    sampling = SamplingParams(max_tokens=new_tokens, temperature=0.0, ignore_eos=True)
    seqs = [Sequence(f"gpu-check-{next(_ids)}", list(p), sampling) for p in prompts]
    for seq in seqs:
        engine.admission.admit(seq.num_prompt_tokens)
        engine.add(seq)
    run = EngineRun(0.0, [])
    start = time.perf_counter()
    while engine.has_work():
        live = [s for s in seqs if not s.is_finished]
        decoding = all(s.num_computed_tokens >= s.num_prompt_tokens for s in live)
        began = time.perf_counter()
        engine.step()  # ends with the sampled ids' copy to the host: the step's kernels are done
        if decoding and live:
            run.decode_steps.append((time.perf_counter() - began, len(live), sum(s.num_tokens for s in live)))
    run.seconds = time.perf_counter() - start
    run.outputs = [s.output_token_ids for s in seqs]
    return run


# -- 1. greedy equality -----------------------------------------------------------------------------


@torch.inference_mode()
def reference_greedy(
    model: Any, prompt: list[int], new_tokens: int, device: torch.device
) -> tuple[list[int], Any]:
    from transformers import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=new_tokens,
        do_sample=False,
        eos_token_id=-1,  # never matches: EOS off
        pad_token_id=0,
        output_logits=True,
        return_dict_in_generate=True,
    )
    ids = torch.tensor([prompt], device=device)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
    return out.sequences[0, len(prompt) :].tolist(), torch.stack(out.logits)[:, 0].float().cpu()


def verdict(ours: list[int], expected: list[int], logits: Any, tie_margin: float) -> tuple[str, bool]:
    """("equal" | "near-tie at token i (gap g)" | "MISMATCH at token i (gap g)", acceptable)."""
    if ours == expected:
        return "equal", True
    at = next(i for i, (a, b) in enumerate(zip(ours, expected, strict=False)) if a != b)
    top = logits[at].topk(2).values
    gap = float(top[0] - top[1])
    if gap < tie_margin:
        return f"near-tie at token {at} (gap {gap:.3g})", True
    return f"MISMATCH at token {at} (gap {gap:.3g})", False


def equality_rows(
    ours: Any, reference: Any, args: argparse.Namespace, dtype: str, prompts: list[list[int]]
) -> tuple[list[tuple[str, str]], bool]:
    placement = resolve_placement(args.device, dtype)
    longest = max(len(p) for p in prompts) + args.new_tokens
    engine = make_engine(ours, args, dtype, longest)
    place_module(reference, placement)
    label = str(placement.dtype).removeprefix("torch.")
    expected = [reference_greedy(reference, p, args.new_tokens, placement.device) for p in prompts]
    alone = [run_engine(engine, [p], args.new_tokens).outputs[0] for p in prompts]
    together = run_engine(engine, prompts, args.new_tokens).outputs
    rows, ok = [], True
    for name, outputs in (("alone", alone), (f"{len(prompts)} together", together)):
        results = [verdict(o, e, lg, args.tie_margin) for o, (e, lg) in zip(outputs, expected, strict=True)]
        ok = ok and all(good for _, good in results)
        equal = sum(text == "equal" for text, _ in results)
        others = "; ".join(f"prompt {i}: {text}" for i, (text, _) in enumerate(results) if text != "equal")
        rows.append(
            (f"greedy {label}, {name}", f"{equal}/{len(prompts)} equal" + (f" ({others})" if others else ""))
        )
    return rows, ok


# -- 2. throughput ------------------------------------------------------------------------------------


def best_seconds(runs: list[float]) -> float:
    return min(runs)


def throughput_rows(
    ours: Any, reference: Any, args: argparse.Namespace, dtype: str, rng: random.Random, vocab: int
) -> tuple[dict[str, dict[int, float | str]], EngineRun]:
    low, high = (8, 16) if args.tiny else (64, 128)
    longest = high + args.new_tokens
    engine = make_engine(ours, args, dtype, longest)
    device = str(engine.placement.device)
    place_module(reference, engine.placement)
    new = args.new_tokens
    results: dict[str, dict[int, float | str]] = {"ours": {}, "static": {}, "cb": {}}
    pages = -(-longest // 64) * args.requests + 4
    batch_run = EngineRun(0.0, [])
    for count in (1, args.requests):
        # Warm every path at this batch size (CUDA context, cuBLAS handles, kernel choices).
        warm = prompts_of(rng, count, low, high, vocab)
        run_engine(engine, warm, 4)
        baselines.static_batch_generate(reference, warm, 4, args.threads, device)
        timed: dict[str, list[float]] = {"ours": [], "static": [], "cb": []}
        for _ in range(args.repeats):
            prompts = prompts_of(rng, count, low, high, vocab)
            run = run_engine(engine, prompts, new)
            timed["ours"].append(run.seconds)
            if count == args.requests:
                batch_run = run if not batch_run.outputs or run.seconds < batch_run.seconds else batch_run
            timed["static"].append(
                baselines.static_batch_generate(reference, prompts, new, args.threads, device)
            )
        for name in ("ours", "static"):
            results[name][count] = count * new / best_seconds(timed[name])
        results["cb"][count] = continuous_batching(reference, args, rng, count, (low, high), vocab, pages)
    return results, batch_run


def continuous_batching(
    reference: Any,
    args: argparse.Namespace,
    rng: random.Random,
    count: int,
    lengths: tuple[int, int],
    vocab: int,
    pages: int,
) -> float | str:
    """transformers' ``generate_batch`` tokens/s, or why it did not run here."""
    if args.skip_cb:
        return "skipped"
    budget = max(512, count)
    try:
        baselines.continuous_batching_generate(
            reference, prompts_of(rng, count, *lengths, vocab), 4, args.threads, budget, pages
        )
        runs = [
            baselines.continuous_batching_generate(
                reference,
                prompts_of(rng, count, *lengths, vocab),
                args.new_tokens,
                args.threads,
                budget,
                pages,
            )
            for _ in range(args.repeats)
        ]
    except Exception as exc:  # its API moves between releases; the table says what happened
        return f"n/a ({type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''})"
    return count * args.new_tokens / best_seconds(runs)


def prompts_of(rng: random.Random, count: int, low: int, high: int, vocab: int) -> list[list[int]]:
    return [[rng.randrange(4, vocab) for _ in range(rng.randint(low, high))] for _ in range(count)]


# -- 3. decode step against the bandwidth floor --------------------------------------------------------


def floor_rows(
    model: Any, engine_dtype: torch.dtype, runs: dict[int, EngineRun], bandwidth: float
) -> list[str]:
    """Median decode step of ``runs`` (batch size → run) against the bytes it must read."""
    text = model.config.get_text_config()
    embedding = model.get_input_embeddings().weight
    weight_bytes = (
        sum(p.numel() * p.element_size() for p in model.parameters())
        - embedding.numel() * embedding.element_size()
    )
    head_dim = text.hidden_size // text.num_attention_heads
    width = torch.tensor([], dtype=engine_dtype).element_size()
    kv_per_token = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * width
    rows = []
    for batch, run in runs.items():
        steps = [s for s in run.decode_steps if s[1] == batch] or run.decode_steps
        if not steps:
            continue
        step = statistics.median(s[0] for s in steps)
        context = statistics.mean(s[2] for s in steps)
        weights_floor = weight_bytes / (bandwidth * 1e12)
        total_floor = (weight_bytes + context * kv_per_token) / (bandwidth * 1e12)
        rows.append(
            f"| {batch} | {step * 1e3:.4g} | {weights_floor * 1e3:.4g} | {total_floor * 1e3:.4g} "
            f"| {total_floor / step:.2%} |"
        )
    return rows


# -- the report ----------------------------------------------------------------------------------------


def fmt(value: float | str) -> str:
    return f"{value:,.0f}" if isinstance(value, float) else value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import transformers

    transformers.logging.set_verbosity_error()  # its warnings about eos_token_id=-1 (EOS off on purpose)
    try:
        placement = resolve_placement(args.device, args.dtype)
    except InvalidInput as exc:  # a device this machine lacks: say so before building anything
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    dtype = str(placement.dtype).removeprefix("torch.")
    ours, reference = build_models(args.tiny, resolve_placement(args.device, "float32"))
    vocab = int(ours.config.vocab_size)
    params = sum(p.numel() for p in ours.parameters())
    name = torch.cuda.get_device_name(placement.device) if placement.is_cuda else "CPU"
    print(f"device {placement.device} ({name}), dtype {dtype}, model {params / 1e6:,.1f}M parameters, "
          f"torch {torch.__version__}, transformers {transformers.__version__}")  # fmt: skip
    rng = random.Random(0)
    low, high = (8, 16) if args.tiny else (64, 128)
    check = prompts_of(rng, args.prompts, low, high, vocab)
    rows, ok = equality_rows(ours, reference, args, "float32", check)
    if dtype != "float32":
        more, more_ok = equality_rows(ours, reference, args, dtype, check)
        rows, ok = rows + more, ok and more_ok
    print("\n| check | result |\n|---|---|")
    for label, result in rows:
        print(f"| {label} | {result} |")

    results, batch_run = throughput_rows(ours, reference, args, dtype, rng, vocab)
    n = args.requests
    print(f"\n| system ({dtype}, {args.new_tokens} new tokens) | tokens/s, 1 request "
          f"| tokens/s, {n} requests | ours ÷ it at {n} |\n|---|---|---|---|")  # fmt: skip
    labels = {
        "ours": "ours (LLMEngine)",
        "static": "transformers static batch (generate)",
        "cb": "transformers continuous batching (generate_batch)",
    }
    for key, label in labels.items():
        one, many = results[key][1], results[key][n]
        ratio = f"{results['ours'][n] / many:.2f}x" if isinstance(many, float) else "n/a"
        print(f"| {label} | {fmt(one)} | {fmt(many)} | {ratio} |")

    single = make_engine(ours, args, dtype, high + args.new_tokens)
    runs = {1: run_engine(single, prompts_of(rng, 1, low, high, vocab), args.new_tokens), n: batch_run}
    print("\n| decode batch | ms/step (median) | floor: weights, ms | floor: weights + KV, ms | of floor |"
          "\n|---|---|---|---|---|")  # fmt: skip
    for row in floor_rows(ours, placement.dtype, runs, args.bandwidth_tbps):
        print(row)
    print(f"\nfloor = bytes one decode step reads ÷ {args.bandwidth_tbps} TB/s (--bandwidth-tbps)")
    if not ok:
        print("greedy outputs differ from transformers beyond near-ties", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
