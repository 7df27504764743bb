"""Paged KV-cache bookkeeping with prefix caching (no tensors here; the runner owns the memory).

A block holds the K/V of ``block_size`` consecutive positions of one sequence. Full blocks are keyed
by a chain hash (parent block's hash, cache namespace, the block's tokens), so two requests with the
same token prefix (under the same adapter) share blocks. Blocks are reference counted; a block
whose count drops to zero keeps its hash and stays reusable until it is evicted, least recently
freed first, when fresh blocks run short.
"""

from __future__ import annotations

import hashlib
import struct
from array import array
from collections import OrderedDict
from collections.abc import Sequence as Seq
from dataclasses import dataclass

from llmops.engine.sequence import Sequence

_ROOT_HASH = 0


def chain_hash(parent: int, namespace: int, tokens: Seq[int]) -> int:
    """64-bit hash of a full block given its parent's hash: equal iff the whole prefix is equal."""
    digest = hashlib.blake2b(struct.pack("<qq", parent, namespace), digest_size=8)
    digest.update(array("q", tokens).tobytes())
    return int.from_bytes(digest.digest(), "little", signed=True)


@dataclass
class _Block:
    block_id: int
    ref_count: int = 0
    block_hash: int | None = None
    # The block's tokens, checked on a hit so a hash collision can never serve foreign K/V.
    token_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class PrefixCacheStats:
    """Prefix-cache lookups counted in prompt tokens: queried and found in the cache."""

    queries: int
    hits: int


class BlockManager:
    """Allocates, shares and frees KV blocks; all methods are O(blocks touched)."""

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self._blocks = [_Block(i) for i in range(num_blocks)]
        # Free blocks in eviction order: uncached ones at the front, cached ones appended as freed.
        self._free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self._cached: dict[int, int] = {}  # block hash -> block id
        self.queries = 0
        self.hits = 0

    @property
    def num_free_blocks(self) -> int:
        """Blocks that can be handed out now (free cached blocks count: they can be evicted)."""
        return len(self._free)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - len(self._free)

    def stats(self) -> PrefixCacheStats:
        return PrefixCacheStats(queries=self.queries, hits=self.hits)

    def blocks_needed(self, seq: Sequence, num_new_tokens: int) -> int:
        """New blocks ``seq`` needs to hold ``num_new_tokens`` more computed tokens."""
        total = seq.num_computed_tokens + num_new_tokens
        return max(0, -(-total // self.block_size) - len(seq.block_table))

    def allocate_cached_prefix(self, seq: Sequence) -> int:
        """Attach the cached blocks of ``seq``'s longest cached prefix; returns the tokens covered.

        Only for a sequence with no blocks. At least one token is always left to compute, because
        the step that computes it produces the logits of the next token.
        """
        assert not seq.block_table and seq.num_computed_tokens == 0
        if not self.enable_prefix_caching:
            return 0
        max_blocks = (seq.num_tokens - 1) // self.block_size
        hashes = self._block_hashes(seq, max_blocks)
        for index, block_hash in enumerate(hashes):
            block_id = self._cached.get(block_hash)
            tokens = tuple(self._block_tokens(seq, index))
            if block_id is None or self._blocks[block_id].token_ids != tokens:
                break
            self._take(block_id)
            seq.block_table.append(block_id)
        seq.num_committed_blocks = len(seq.block_table)
        seq.num_computed_tokens = len(seq.block_table) * self.block_size
        return seq.num_computed_tokens

    def record_lookup(self, queried_tokens: int, hit_tokens: int) -> None:
        """Count one admitted lookup (attempts that had to wait for blocks are not counted)."""
        if self.enable_prefix_caching:
            self.queries += queried_tokens
            self.hits += hit_tokens

    def append_slots(self, seq: Sequence, num_new_tokens: int) -> bool:
        """Give ``seq`` the blocks for ``num_new_tokens`` more tokens; all or nothing."""
        needed = self.blocks_needed(seq, num_new_tokens)
        if needed > len(self._free):
            return False
        for _ in range(needed):
            seq.block_table.append(self._pop_free())
        return True

    def commit(self, seq: Sequence) -> None:
        """Register the blocks filled by the last step in the prefix cache (after K/V are written)."""
        num_full = seq.num_computed_tokens // self.block_size
        if not self.enable_prefix_caching:
            seq.num_committed_blocks = num_full
            return
        hashes = self._block_hashes(seq, num_full)
        for index in range(seq.num_committed_blocks, num_full):
            block = self._blocks[seq.block_table[index]]
            block_hash = hashes[index]
            # A duplicate of an already cached block stays unhashed and is freed as a plain block.
            if block_hash not in self._cached and block.block_hash is None:
                block.block_hash = block_hash
                block.token_ids = tuple(self._block_tokens(seq, index))
                self._cached[block_hash] = block.block_id
        seq.num_committed_blocks = num_full

    def truncate(self, seq: Sequence, num_tokens: int) -> None:
        """Give back the blocks past the first ``num_tokens`` positions (rejected speculative slots).

        Only uncommitted tail blocks can lie there: committed blocks hold computed tokens.
        """
        keep = max(seq.num_committed_blocks, -(-num_tokens // self.block_size))
        while len(seq.block_table) > keep:
            block = self._blocks[seq.block_table.pop()]
            block.ref_count -= 1
            assert block.ref_count >= 0, "block freed twice"
            if block.ref_count == 0:
                self._free[block.block_id] = None
                self._free.move_to_end(block.block_id, last=block.block_hash is not None)

    def free(self, seq: Sequence) -> None:
        """Drop ``seq``'s references; its cached blocks stay reusable until evicted."""
        # Freed last block first, so a prefix outlives its tails under LRU eviction.
        for block_id in reversed(seq.block_table):
            block = self._blocks[block_id]
            block.ref_count -= 1
            assert block.ref_count >= 0, "block freed twice"
            if block.ref_count == 0:
                self._free[block_id] = None
                if block.block_hash is None:
                    self._free.move_to_end(block_id, last=False)
        seq.block_table = []
        seq.num_committed_blocks = 0

    def reset_prefix_cache(self) -> None:
        """Forget every cached hash (for example after the weights change)."""
        for block in self._blocks:
            block.block_hash = None
            block.token_ids = ()
        self._cached.clear()

    def _block_hashes(self, seq: Sequence, count: int) -> list[int]:
        """Chain hashes of ``seq``'s first ``count`` full blocks, extending the cached list."""
        hashes = seq.block_hashes
        while len(hashes) < count:
            parent = hashes[-1] if hashes else _ROOT_HASH
            hashes.append(chain_hash(parent, seq.cache_namespace, self._block_tokens(seq, len(hashes))))
        return hashes[:count]

    def _block_tokens(self, seq: Sequence, index: int) -> list[int]:
        return seq.token_ids[index * self.block_size : (index + 1) * self.block_size]

    def _take(self, block_id: int) -> None:
        block = self._blocks[block_id]
        if block.ref_count == 0:
            del self._free[block_id]
        block.ref_count += 1

    def _pop_free(self) -> int:
        block_id, _ = self._free.popitem(last=False)
        block = self._blocks[block_id]
        if block.block_hash is not None:
            # Evict: this block's K/V are about to be overwritten.
            if self._cached.get(block.block_hash) == block_id:
                del self._cached[block.block_hash]
            block.block_hash = None
            block.token_ids = ()
        block.ref_count = 1
        return block_id
