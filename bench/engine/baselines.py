"""The transformers baselines: ``generate`` one at a time, a static left-padded batch, and
transformers' own continuous batching (``generate_batch`` offline, its manager for arrivals)."""

from __future__ import annotations

import threading
import time
from typing import Any

import torch


def _generation_config(new_tokens: int) -> Any:
    from transformers import GenerationConfig

    # eos_token_id=-1 never matches: every request generates exactly new_tokens (greedy).
    return GenerationConfig(max_new_tokens=new_tokens, do_sample=False, eos_token_id=-1, pad_token_id=0)


@torch.inference_mode()
def sequential_generate(
    model: Any, prompts: list[list[int]], new_tokens: int, threads: int = 1, device: str = "cpu"
) -> float:
    """Seconds to serve the prompts one after another with ``generate``."""
    torch.set_num_threads(threads)
    config = _generation_config(new_tokens)
    start = time.perf_counter()
    for prompt in prompts:
        ids = torch.tensor([prompt], device=device)
        model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
    return time.perf_counter() - start


@torch.inference_mode()
def static_batch_generate(
    model: Any, prompts: list[list[int]], new_tokens: int, threads: int = 2, device: str = "cpu"
) -> float:
    """Seconds to serve all prompts as one left-padded batch with ``generate`` (the output's copy
    back to the host ends the timing, so a GPU run is timed to its last kernel)."""
    torch.set_num_threads(threads)
    longest = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), longest, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, longest - len(prompt) :] = torch.tensor(prompt)
        mask[row, longest - len(prompt) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    start = time.perf_counter()
    out = model.generate(ids, attention_mask=mask, generation_config=_generation_config(new_tokens)).cpu()
    elapsed = time.perf_counter() - start
    assert out.shape[1] == longest + new_tokens
    return elapsed


def _cb_config(max_batch_tokens: int, max_requests: int, num_blocks: int = 128) -> Any:
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    # Sized by hand on CPU (the automatic sizing reads GPU memory): 128 pages of 64 tokens hold
    # 8192 tokens, enough for 32 requests of up to 128 + 64 tokens without preemption.
    return ContinuousBatchingConfig(
        page_size=64,
        num_blocks=num_blocks,
        max_batch_tokens=max_batch_tokens,
        max_requests_per_batch=max_requests,
    )


@torch.inference_mode()
def continuous_batching_generate(
    model: Any,
    prompts: list[list[int]],
    new_tokens: int,
    threads: int = 2,
    max_batch_tokens: int = 512,
    num_blocks: int = 128,
) -> float:
    """Seconds for transformers' ``generate_batch`` (continuous batching) over all prompts;
    ``num_blocks`` pages of 64 tokens of cache."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    results = model.generate_batch(
        inputs=prompts,
        generation_config=_generation_config(new_tokens),
        continuous_batching_config=_cb_config(max_batch_tokens, len(prompts), num_blocks),
        warmup=False,
    )
    elapsed = time.perf_counter() - start
    assert sum(len(r.generated_tokens) for r in results.values()) == len(prompts) * new_tokens
    return elapsed


@torch.inference_mode()
def continuous_batching_ttft(
    model: Any, prompts: list[list[int]], arrivals: list[float], new_tokens: int, threads: int = 2
) -> list[float]:
    """TTFT of each request (seconds) when requests arrive at ``arrivals`` (offsets from start).

    Measured like ours, where the caller receives the first token: requests stream, and the first
    output with a token is timed when this (consumer) thread gets it from the manager.
    """
    torch.set_num_threads(threads)
    manager = model.init_continuous_batching(
        generation_config=_generation_config(new_tokens),
        continuous_batching_config=_cb_config(512, 64),
    )
    manager.start()
    sent: dict[str, float] = {}
    origin = time.perf_counter()

    def submit() -> None:
        for index, (prompt, offset) in enumerate(zip(prompts, arrivals, strict=True)):
            time.sleep(max(0.0, origin + offset - time.perf_counter()))
            sent[f"r{index}"] = time.perf_counter()
            manager.add_request(prompt, request_id=f"r{index}", max_new_tokens=new_tokens, streaming=True)

    driver = threading.Thread(target=submit)
    driver.start()
    ttft: dict[str, float] = {}
    finished: set[str] = set()
    try:
        while len(finished) < len(prompts):
            result = manager.get_result(timeout=60)
            if result is None:
                raise RuntimeError("transformers' continuous batching stopped answering")
            if result.generated_tokens and result.request_id not in ttft:
                ttft[result.request_id] = time.perf_counter() - sent[result.request_id]
            if result.is_finished():
                finished.add(result.request_id)
    finally:
        driver.join()
        manager.stop(block=True, timeout=10)
        model.destroy_cached_continuous_batching_manager()
    return [ttft[f"r{i}"] for i in range(len(prompts))]
