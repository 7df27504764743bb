"""Paged attention for transformers models, registered in transformers' ``AttentionInterface``.

The runner calls the model with a flattened "varlen" batch laid out as ``T`` rows of one token each
(input_ids ``[T, 1]``, explicit position_ids ``[T, 1]``): every scheduled token of every sequence,
prefill chunks and decode tokens together. Putting the tokens on the batch axis keeps every linear
layer one GEMM over ``T`` rows and lets peft's mixed-adapter LoRA pick an adapter per token.

Each attention layer then calls ``paged_attention_forward`` with the layer's query/key/value after
RoPE. It writes the new K/V into the paged cache (``slot_mapping``) and attends, per sequence, over
that sequence's cached positions. Single-token (decode) rows go through the C++ decode kernel
(``paged_kernel``), which reads K/V through the block tables in place, when the batch carries one;
otherwise their blocks are gathered into a workspace and attended by one batched SDPA, padded to the
longest context with a key mask. Each multi-token (prefill) chunk is attended by SDPA: a chunk from
position 0 over its own K/V (plain causal), a later chunk over its gathered blocks with a causal mask
offset by the chunk's start. Without an ``AttentionBatch`` (embeddings, plain calls) it is SDPA.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

ATTENTION_NAME = "llmops_paged"
BATCH_KWARG = "llmops_batch"


@dataclass(frozen=True)
class PrefillSpan:
    """A multi-token chunk: rows ``[row_start, row_end)`` of the batch, query positions from ``start``.

    ``blocks`` ``[nb]``: the sequence's KV blocks covering positions ``0 .. start + n - 1``.
    ``mask`` ``[n, start + n]`` (True = attend) when ``start > 0``; None means plain causal.
    """

    row_start: int
    row_end: int
    start: int
    blocks: torch.Tensor
    mask: torch.Tensor | None

    @property
    def context_len(self) -> int:
        return self.start + self.row_end - self.row_start


@dataclass(frozen=True)
class DecodeGroup:
    """All single-token rows: rows ``0 .. B-1`` of the batch.

    ``tables`` ``[B, nb]``: each row's first ``nb`` block ids (padded with block 0); ``context_lens``
    ``[B]`` each row's context; ``context_len`` the longest ``L``; ``mask`` ``[B, 1, 1, L]`` (True =
    attend) for the gather path, None when every context has length ``L`` or the kernel attends.
    """

    num_rows: int
    tables: torch.Tensor
    context_lens: torch.Tensor
    context_len: int
    mask: torch.Tensor | None


@dataclass(frozen=True)
class AttentionBatch:
    """What every layer's attention needs for one forward pass of the engine."""

    key_cache: torch.Tensor  # [num_layers, num_slots, num_kv_heads, head_dim]
    value_cache: torch.Tensor  # [num_layers, num_slots, num_kv_heads, head_dim]
    block_size: int  # slot = block id * block_size + offset
    slot_mapping: torch.Tensor  # [T]: where each row's new K/V go
    # Flat buffer the gathered K/V are copied into, at least 2 * max gathered blocks * block numel.
    workspace: torch.Tensor
    decode: DecodeGroup | None = None
    prefills: list[PrefillSpan] = field(default_factory=list)
    # torch.ops.llmops_paged.decode_attention when the decode rows use it, else None (gather + SDPA).
    decode_kernel: Callable[..., torch.Tensor] | None = None

    def gather(
        self, blocks: torch.Tensor, key_blocks: torch.Tensor, value_blocks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Copy ``blocks`` of K and V into the workspace: two ``[n, block_size, KVH, D]`` tensors.

        A persistent buffer instead of fresh tensors: the gathers grow every decode step, and
        growing allocations are served by fresh mmaps whose page faults cost more than the copy.
        """
        n = blocks.numel()
        shape = (n, *key_blocks.shape[1:])
        size = key_blocks[0].numel() * n
        keys = torch.index_select(key_blocks, 0, blocks, out=self.workspace[:size].view(shape))
        values = torch.index_select(value_blocks, 0, blocks, out=self.workspace[size : 2 * size].view(shape))
        return keys, values


def paged_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """query ``[T, H, 1, D]``, key/value ``[T, KVH, 1, D]`` → output ``[T, 1, H, D]``."""
    batch: AttentionBatch | None = kwargs.pop(BATCH_KWARG, None)
    if batch is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    layer = int(module.layer_idx)  # type: ignore[arg-type]
    keys = batch.key_cache[layer]  # [num_slots, KVH, D]
    values = batch.value_cache[layer]
    keys.index_copy_(0, batch.slot_mapping, key[:, :, 0])
    values.index_copy_(0, batch.slot_mapping, value[:, :, 0])
    # Gathering whole blocks (contiguous block_size * KVH * D runs) is several times faster than
    # gathering slot by slot. [num_blocks, block_size, KVH, D]
    key_blocks = keys.view(-1, batch.block_size, *keys.shape[1:])
    value_blocks = values.view(-1, batch.block_size, *values.shape[1:])
    gqa = query.shape[1] != key.shape[1]

    out = query.new_empty(query.shape[0], query.shape[1], query.shape[3])  # [T, H, D]
    if batch.decode is not None:
        rows = batch.decode.num_rows
        if batch.decode_kernel is not None:
            scale = scaling if scaling is not None else query.shape[-1] ** -0.5
            out[:rows] = batch.decode_kernel(
                query[:rows, :, 0],
                keys,
                values,
                batch.decode.tables,
                batch.decode.context_lens,
                batch.block_size,
                scale,
            )
        else:
            k, v = batch.gather(batch.decode.tables.flatten(), key_blocks, value_blocks)
            out[:rows] = _attend_decode(query[:rows], k, v, batch.decode, scaling, gqa)
    for span in batch.prefills:
        chunk = slice(span.row_start, span.row_end)
        q = query[chunk, :, 0].transpose(0, 1).unsqueeze(0)  # [1, H, n, D]
        if span.start == 0:
            # A chunk from position 0 attends only to its own tokens: this step's K/V, no gather.
            k, v = key[chunk, :, 0].unsqueeze(0), value[chunk, :, 0].unsqueeze(0)  # [1, n, KVH, D]
        else:
            k, v = batch.gather(span.blocks, key_blocks, value_blocks)
        out[chunk] = _attend_prefill(q, k, v, span, scaling, gqa)
    return out.unsqueeze(1), None


def _attend_decode(
    query: torch.Tensor,
    key_blocks: torch.Tensor,
    value_blocks: torch.Tensor,
    group: DecodeGroup,
    scaling: float | None,
    gqa: bool,
) -> torch.Tensor:
    """query ``[B, H, 1, D]`` over gathered blocks ``[B * nb, bs, KVH, D]`` → ``[B, H, D]``."""
    rows, length = group.num_rows, group.context_len
    # [B * nb, bs, KVH, D] -> [B, nb * bs, KVH, D] -> first L positions -> [B, KVH, L, D]
    k = key_blocks.view(rows, -1, *key_blocks.shape[2:])[:, :length]
    v = value_blocks.view(rows, -1, *value_blocks.shape[2:])[:, :length]
    attended = F.scaled_dot_product_attention(
        query, k.transpose(1, 2), v.transpose(1, 2), attn_mask=group.mask, scale=scaling, enable_gqa=gqa
    )  # [B, H, 1, D]
    return attended[:, :, 0]


def _attend_prefill(
    query: torch.Tensor,
    key_blocks: torch.Tensor,
    value_blocks: torch.Tensor,
    span: PrefillSpan,
    scaling: float | None,
    gqa: bool,
) -> torch.Tensor:
    """query ``[1, H, n, D]`` over its sequence's blocks ``[nb, bs, KVH, D]`` (gathered, or this
    step's own K/V as one block) → ``[n, H, D]``."""
    # [nb, bs, KVH, D] -> [ctx, KVH, D] -> [1, KVH, ctx, D]
    k = key_blocks.flatten(0, 1)[: span.context_len].transpose(0, 1)
    v = value_blocks.flatten(0, 1)[: span.context_len].transpose(0, 1)
    # A chunk from position 0 is plain causal attention, exactly as transformers computes a prompt.
    attended = F.scaled_dot_product_attention(
        query,
        k.unsqueeze(0),
        v.unsqueeze(0),
        attn_mask=span.mask,
        is_causal=span.mask is None,
        scale=scaling,
        enable_gqa=gqa,
    )  # [1, H, n, D]
    return attended[0].transpose(0, 1)


def register_paged_attention() -> str:
    """Register the function under ``ATTENTION_NAME`` (idempotent) and return the name."""
    AttentionInterface.register(ATTENTION_NAME, paged_attention_forward)
    return ATTENTION_NAME
