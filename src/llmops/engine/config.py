"""``EngineConfig``: the typed knobs of the in-process engine (threads, KV cache, batching, queues).

One pydantic model, every field described, so the CLI and YAML files can be built from it. Values
that depend on the model (the context length) are resolved against the model config by
``resolve_max_model_len``; nothing here reads the environment.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmops.engine.device import Placement, resolve_placement

DType = Literal["auto", "float32", "bfloat16", "float16"]
DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]+)?)$"


def _default_threads() -> int:
    # Intra-op threads beyond the physical cores only add contention; 8 is plenty for the small
    # matrices of one decode step.
    return max(1, min(8, os.cpu_count() or 1))


class SpeculativeConfig(BaseModel):
    """Speculative decoding: a small draft model proposes ``k`` tokens, the served model verifies them.

    ``draft`` is a registry reference or a local model directory; the replica resolves it. The draft
    must share the served model's tokenizer (same vocabulary), or the engine refuses to start.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    draft: str = Field(min_length=1, description="Draft model: registry reference or local model directory.")
    k: int = Field(default=4, ge=1, le=16, description="Tokens the draft proposes per step and sequence.")


class EngineConfig(BaseModel):
    """How the in-process engine batches, caches and admits requests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threads: int = Field(
        default_factory=_default_threads,
        ge=1,
        description="torch intra-op threads used by the engine (torch.set_num_threads); tests use 1.",
    )
    device: str = Field(
        default="auto",
        pattern=DEVICE_PATTERN,
        description="Where the model, KV cache and sampling run: auto (cuda when torch sees a GPU, else "
        "cpu), cpu, cuda or cuda:N.",
    )
    dtype: DType = Field(
        default="auto",
        description="Dtype of the weights, KV cache and adapters: auto (bfloat16 on CUDA, float32 on the "
        "CPU), float32, bfloat16 or float16.",
    )
    block_size: int = Field(default=16, ge=1, le=1024, description="Tokens per KV-cache block.")
    num_kv_blocks: int | None = Field(
        default=None,
        ge=1,
        description="KV-cache blocks to allocate; None sizes the cache from kv_cache_memory_mb.",
    )
    kv_cache_memory_mb: int = Field(
        default=512,
        ge=1,
        description="Memory budget of the KV cache in MiB, used when num_kv_blocks is None.",
    )
    max_num_seqs: int = Field(default=64, ge=1, description="Most sequences in the running batch at once.")
    max_num_batched_tokens: int = Field(
        default=512,
        ge=1,
        description="Token budget of one engine step (decode tokens plus chunked-prefill tokens).",
    )
    max_model_len: int | None = Field(
        default=None,
        ge=2,
        description="Context length (prompt + output); None uses the model's max_position_embeddings.",
    )
    enable_prefix_caching: bool = Field(
        default=True, description="Reuse KV blocks of identical token prefixes across requests."
    )
    max_queue_requests: int = Field(
        default=256,
        ge=0,
        description="Most requests waiting for their first step; more are refused with Overloaded.",
    )
    max_queue_tokens: int = Field(
        default=262_144,
        ge=0,
        description="Most prompt tokens waiting for their first step; more are refused with Overloaded.",
    )
    max_top_logprobs: int = Field(
        default=20, ge=0, description="Largest top_logprobs a request may ask for (OpenAI allows 20)."
    )
    seed: int = Field(default=0, description="Seed of the shared generator used by unseeded sampling.")
    decode_kernel: bool = Field(
        default=True,
        description="CPU: attend decode rows with the C++ paged kernel (built with g++ on first "
        "use, cached per machine) instead of gathering K/V for SDPA; falls back to SDPA, logged, when it "
        "cannot be built.",
    )
    prepack_weights: bool = Field(
        default=True,
        description="CPU: pack each linear layer's weight once into oneDNN's blocked layout for the "
        "GEMMs of steps that batch several sequences (a lone sequence keeps the dense weights, equal to "
        "transformers bit for bit); holds a second copy of those weights in memory, widened to float32 "
        "for 16-bit weights on a CPU without 16-bit arithmetic (twice their size).",
    )
    speculative: SpeculativeConfig | None = Field(
        default=None,
        description="Speculative decoding with a draft model ({draft: REF, k: 4}); None decodes one "
        "token per step.",
    )

    @model_validator(mode="after")
    def _budget_fits_a_decode_batch(self) -> EngineConfig:
        # Decode is prioritised: every running sequence must be able to get its one token per step.
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError("max_num_batched_tokens must be >= max_num_seqs so every decode fits a step")
        return self

    def placement(self) -> Placement:
        """This config's device and dtype on this machine; InvalidInput when the device is absent."""
        return resolve_placement(self.device, self.dtype)

    def kv_blocks_for(self, num_layers: int, num_kv_heads: int, head_dim: int, bytes_per_value: int) -> int:
        """Blocks to allocate: ``num_kv_blocks`` or as many as fit ``kv_cache_memory_mb``."""
        if self.num_kv_blocks is not None:
            return self.num_kv_blocks
        # K and V, per layer, per token: num_kv_heads * head_dim values.
        bytes_per_block = 2 * num_layers * self.block_size * num_kv_heads * head_dim * bytes_per_value
        return max(1, (self.kv_cache_memory_mb * 1024 * 1024) // bytes_per_block)


def resolve_max_model_len(
    config: EngineConfig, max_position_embeddings: int | None, sliding_window: int | None
) -> int:
    """The context length the engine serves.

    Bounded by the model's position embeddings and, for models with sliding-window attention, by
    the window: the paged attention here attends over the full context, which equals windowed
    attention exactly as long as no sequence is longer than the window.
    """
    limits = [n for n in (config.max_model_len, max_position_embeddings, sliding_window) if n]
    return min(limits) if limits else 2048
