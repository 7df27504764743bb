"""Model runner: turns a step's scheduled chunks into one forward pass and returns logits.

Owns the paged KV cache tensors, on the engine's device and dtype. The step's metadata (token ids,
positions, slots, block tables, masks) is built on the host and copied to the device once per
step; logits stay on the device for the sampler. Layout of one forward (``T`` = scheduled tokens): rows
``0 .. B-1`` are the single-token chunks (decodes), then each multi-token (prefill) chunk's rows
in order. Only the rows that pick a next token go through the LM head: the last row of a sampling chunk, or
every row of a chunk that verifies speculative drafts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import overload

import torch

from llmops.engine.adapters import BASE_ADAPTER, AdapterSet
from llmops.engine.device import Placement
from llmops.engine.host_memory import zeros_on_huge_pages
from llmops.engine.packed_linear import packed_gemms
from llmops.engine.paged_attention import BATCH_KWARG, AttentionBatch, DecodeGroup, PrefillSpan
from llmops.engine.paged_kernel import load_decode_kernel
from llmops.engine.scheduler import ScheduledChunk

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedBatch:
    """Tensors of one forward pass and which rows sample."""

    input_ids: torch.Tensor  # [T, 1]
    position_ids: torch.Tensor  # [T, 1]
    attention: AttentionBatch
    sample_rows: torch.Tensor  # [S]: rows whose hidden state picks a token
    sample_chunks: list[ScheduledChunk]  # [S], same order
    row_adapters: list[str] | None  # [T] adapter per row, None when no row uses one
    num_seqs: int  # sequences in the step: packed GEMMs only for more than one


class ModelRunner:
    """Runs a transformers causal LM over the paged cache."""

    def __init__(
        self,
        adapters: AdapterSet,
        num_blocks: int,
        block_size: int,
        placement: Placement,
        decode_kernel: bool = False,
    ) -> None:
        self.adapters = adapters
        self.device = placement.device
        self.block_size = block_size
        self.num_blocks = num_blocks
        config = adapters.base_model.config.get_text_config()
        self.num_layers = int(config.num_hidden_layers)
        self.num_kv_heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
        self.head_dim = int(
            getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        )
        shape = (self.num_layers, num_blocks * block_size, self.num_kv_heads, self.head_dim)
        self.key_cache = zeros_on_huge_pages(shape, placement.dtype, self.device)
        self.value_cache = zeros_on_huge_pages(shape, placement.dtype, self.device)
        self._block_numel = block_size * self.num_kv_heads * self.head_dim
        self._workspace = torch.empty(0, dtype=placement.dtype, device=self.device)
        self._decode_kernel = _decode_kernel_for(placement) if decode_kernel else None

    @torch.inference_mode()
    def execute(self, chunks: list[ScheduledChunk]) -> tuple[list[ScheduledChunk], torch.Tensor]:
        """Run ``chunks``; return the sampling chunks and their logits in float32: ``chunk.num_logits``
        rows per chunk, in the order of the returned chunks (one row each without drafts)."""
        batch = self.prepare(chunks)
        return batch.sample_chunks, self.forward(batch)

    def forward(self, batch: PreparedBatch) -> torch.Tensor:
        with packed_gemms(batch.num_seqs > 1):
            return self._forward(batch)

    def _forward(self, batch: PreparedBatch) -> torch.Tensor:
        model = self.adapters.base_model
        with self.adapters.activate(batch.row_adapters):
            hidden = model.get_decoder()(
                input_ids=batch.input_ids,
                position_ids=batch.position_ids,
                use_cache=False,
                **{BATCH_KWARG: batch.attention},
            ).last_hidden_state  # [T, 1, hidden]
        picked = hidden[batch.sample_rows, 0]  # [S, hidden]
        sample_adapters = None
        if batch.row_adapters is not None:
            sample_adapters = [batch.row_adapters[int(row)] for row in batch.sample_rows]
        with self.adapters.activate(sample_adapters):
            logits = model.get_output_embeddings()(picked)  # [S, vocab]
        return logits.float()

    def prepare(self, chunks: list[ScheduledChunk]) -> PreparedBatch:
        decodes = [c for c in chunks if c.num_tokens == 1]
        prefills = [c for c in chunks if c.num_tokens > 1]
        ordered = decodes + prefills
        tokens: list[int] = []
        positions: list[int] = []
        for chunk in ordered:
            tokens.extend(chunk.token_ids)
            positions.extend(range(chunk.start, chunk.start + chunk.num_tokens))
        # One decode row keeps the gather + SDPA path: its logits then stay bitwise equal to
        # transformers' (a batch of several rows cannot be: the GEMMs' kernels depend on the rows).
        kernel = self._decode_kernel if len(decodes) > 1 else None
        decode_group, decode_slots = self._decode_group(decodes, masked=kernel is None)
        spans, prefill_slots = self._prefill_spans(prefills, first_row=len(decodes))
        slot_mapping = torch.cat([decode_slots, *prefill_slots]) if prefills else decode_slots
        sample_rows: list[int] = []
        sample_chunks: list[ScheduledChunk] = []
        row = 0
        for chunk in ordered:
            row += chunk.num_tokens
            if chunk.samples:
                sample_rows.extend(range(row - chunk.num_logits, row))
                sample_chunks.append(chunk)
        decode_gathered = decode_group.tables.numel() if decode_group and kernel is None else 0
        gathered = max([decode_gathered] + [len(s.blocks) for s in spans if s.start > 0])
        return PreparedBatch(
            input_ids=self._on_device(torch.tensor(tokens, dtype=torch.long).unsqueeze(1)),
            position_ids=self._on_device(torch.tensor(positions, dtype=torch.long).unsqueeze(1)),
            attention=AttentionBatch(
                self.key_cache,
                self.value_cache,
                self.block_size,
                self._on_device(slot_mapping),
                self._workspace_for(gathered),
                decode_group,
                spans,
                kernel,
            ),
            sample_rows=self._on_device(torch.tensor(sample_rows, dtype=torch.long)),
            sample_chunks=sample_chunks,
            row_adapters=self._row_adapters(ordered),
            num_seqs=len(ordered),
        )

    def _workspace_for(self, blocks: int) -> torch.Tensor:
        """The gather buffer, grown (doubling) to hold K and V of ``blocks`` blocks."""
        needed = 2 * blocks * self._block_numel
        if self._workspace.numel() < needed:
            self._workspace = torch.empty(
                max(needed, 2 * self._workspace.numel()), dtype=self.key_cache.dtype, device=self.device
            )
        return self._workspace

    def _decode_group(
        self, decodes: list[ScheduledChunk], masked: bool
    ) -> tuple[DecodeGroup | None, torch.Tensor]:
        """Block tables ``[B, nb]`` of the decode rows' contexts, their key mask when ``masked`` (the
        gather path) and ragged, and the new-token slots."""
        if not decodes:
            return None, torch.empty(0, dtype=torch.long)
        context = torch.tensor([c.start + 1 for c in decodes], dtype=torch.long)  # [B]
        longest = int(context.max())
        num_blocks = -(-longest // self.block_size)
        # Block tables padded with block 0 (masked out): [B, nb].
        tables = torch.tensor([self._padded(c.seq.block_table, num_blocks) for c in decodes])
        last = context - 1  # position of the new token
        new_slots = tables.gather(1, (last // self.block_size).unsqueeze(1)).squeeze(1) * self.block_size
        new_slots += last % self.block_size
        mask = None
        if masked and int(context.min()) != longest:
            mask = (torch.arange(longest) < context.unsqueeze(1)).view(len(decodes), 1, 1, longest)
        group = DecodeGroup(
            len(decodes), self._on_device(tables), self._on_device(context), longest, self._on_device(mask)
        )
        return group, new_slots

    @staticmethod
    def _padded(table: list[int], length: int) -> list[int]:
        head = table[:length]
        return head + [0] * (length - len(head))

    def _prefill_spans(
        self, prefills: list[ScheduledChunk], first_row: int
    ) -> tuple[list[PrefillSpan], list[torch.Tensor]]:
        spans: list[PrefillSpan] = []
        new_slots: list[torch.Tensor] = []
        row = first_row
        for chunk in prefills:
            end = chunk.start + chunk.num_tokens
            blocks = torch.tensor(chunk.seq.block_table[: -(-end // self.block_size)], dtype=torch.long)
            positions = torch.arange(chunk.start, end)
            new_slots.append(
                blocks[positions // self.block_size] * self.block_size + positions % self.block_size
            )
            mask = None
            if chunk.start > 0:
                # Query i (position start + i) sees keys 0 .. start + i: [n, end].
                mask = torch.ones(chunk.num_tokens, end, dtype=torch.bool).tril(diagonal=chunk.start)
            spans.append(
                PrefillSpan(
                    row, row + chunk.num_tokens, chunk.start, self._on_device(blocks), self._on_device(mask)
                )
            )
            row += chunk.num_tokens
        return spans, new_slots

    @overload
    def _on_device(self, tensor: torch.Tensor) -> torch.Tensor: ...
    @overload
    def _on_device(self, tensor: None) -> None: ...
    def _on_device(self, tensor: torch.Tensor | None) -> torch.Tensor | None:
        """A host-built step tensor on the engine's device (the tensor itself on the CPU)."""
        return None if tensor is None else tensor.to(self.device, non_blocking=True)

    def _row_adapters(self, ordered: list[ScheduledChunk]) -> list[str] | None:
        if not any(chunk.seq.adapter for chunk in ordered):
            return None
        names: list[str] = []
        for chunk in ordered:
            names.extend([chunk.seq.adapter or BASE_ADAPTER] * chunk.num_tokens)
        return names


def _decode_kernel_for(placement: Placement) -> Callable[..., torch.Tensor] | None:
    """The C++ decode kernel for a CPU engine (built on first use); None on a GPU or if it cannot be
    built, with the choice logged."""
    if placement.device.type != "cpu":
        logger.info("paged attention: the decode kernel is CPU-only; %s uses SDPA", placement.describe())
        return None
    return load_decode_kernel()
