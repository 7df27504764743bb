"""The benchmark's model, tokenizer and request workloads, all from fixed seeds (nothing downloaded).

Model: a Llama with hidden 256, intermediate 1536, 6 layers, 8 heads, vocab 4096 (10.75M
parameters, untied embeddings), random weights. Tokenizer: a WordLevel vocabulary ``w0 .. w4095``
(the engine needs one to stream text; prompts are sent as token ids).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

VOCAB = 4096
HIDDEN = 256
INTERMEDIATE = 1536
LAYERS = 6
HEADS = 8


def model_config() -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        vocab_size=VOCAB,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )


def build_model_dir(directory: Path, seed: int = 0) -> Path:
    """Write the benchmark model (safetensors) and its tokenizer into ``directory``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    LlamaForCausalLM(model_config()).save_pretrained(directory)
    tokenizer = Tokenizer(models.WordLevel({f"w{i}": i for i in range(VOCAB)}, unk_token="w3"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="w3", bos_token="w1", eos_token="w2", pad_token="w0"
    )
    fast.save_pretrained(directory)
    return directory


def load_reference_model(directory: Path) -> Any:
    """The same weights through plain transformers (SDPA attention), for the baselines."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, dtype=torch.float32).eval()


def random_prompts(count: int, low: int, high: int, seed: int) -> list[list[int]]:
    """Prompts of uniform random length in [low, high], token ids above the special ones."""
    rng = random.Random(seed)
    return [[rng.randrange(4, VOCAB) for _ in range(rng.randint(low, high))] for _ in range(count)]


def poisson_arrivals(count: int, rate: float, seed: int) -> list[float]:
    """Arrival offsets (seconds) of a Poisson process with ``rate`` requests per second."""
    rng = random.Random(seed)
    now, times = 0.0, []
    for _ in range(count):
        now += rng.expovariate(rate)
        times.append(now)
    return times


@dataclass(frozen=True)
class FlopCount:
    """Model FLOPs of a workload: 2 per weight per token plus attention (QK^T and PV)."""

    total: float

    @classmethod
    def of_generation(cls, prompt_lengths: list[int], new_tokens: int) -> FlopCount:
        layer_weights = 4 * HIDDEN * HIDDEN + 3 * HIDDEN * INTERMEDIATE
        head = HIDDEN * VOCAB
        flops = 0.0
        for prompt in prompt_lengths:
            # Every position runs all layers; only the sampled ones run the LM head.
            positions = prompt + new_tokens - 1
            flops += 2 * LAYERS * layer_weights * positions + 2 * head * new_tokens
            # Position p attends over p + 1 keys: 2 matmuls x 2 FLOPs x hidden per key per layer.
            flops += 4 * HIDDEN * LAYERS * sum(p + 1 for p in range(positions))
        return cls(flops)


def gemm_flops_per_second(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of a large fp32 GEMM on ``threads`` threads: the machine's practical peak."""
    import time

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best
