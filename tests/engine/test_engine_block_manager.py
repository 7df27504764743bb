"""Block manager: allocation, reference counts, prefix-cache hits, LRU eviction, stats (no model)."""

from __future__ import annotations

from llmops.engine.block_manager import BlockManager, chain_hash
from llmops.engine.sequence import Sequence


def make_seq(tokens: list[int], request_id: str = "r", namespace: int = 0) -> Sequence:
    return Sequence(request_id=request_id, prompt_token_ids=tokens, cache_namespace=namespace)


def compute_all(manager: BlockManager, seq: Sequence) -> None:
    """Allocate and 'compute' every token of seq, then commit its full blocks."""
    manager.allocate_cached_prefix(seq)
    assert manager.append_slots(seq, seq.num_uncomputed_tokens)
    seq.num_computed_tokens = seq.num_tokens
    manager.commit(seq)


def test_chain_hash_depends_on_parent_namespace_and_tokens() -> None:
    base = chain_hash(0, 0, [1, 2, 3, 4])
    assert base == chain_hash(0, 0, [1, 2, 3, 4])
    assert base != chain_hash(1, 0, [1, 2, 3, 4])
    assert base != chain_hash(0, 1, [1, 2, 3, 4])
    assert base != chain_hash(0, 0, [1, 2, 3, 5])


def test_append_slots_is_all_or_nothing() -> None:
    manager = BlockManager(num_blocks=3, block_size=4)
    seq = make_seq(list(range(10)))
    assert manager.append_slots(seq, 10)  # ceil(10/4) = 3 blocks
    assert len(seq.block_table) == 3 and manager.num_free_blocks == 0
    other = make_seq([1], "other")
    assert not manager.append_slots(other, 1)
    assert other.block_table == []
    manager.free(seq)
    assert manager.num_free_blocks == 3 and manager.num_used_blocks == 0


def test_prefix_hit_shares_blocks_and_counts_stats() -> None:
    manager = BlockManager(num_blocks=8, block_size=4)
    first = make_seq(list(range(10)), "a")  # two full blocks + 2 tokens
    compute_all(manager, first)
    second = make_seq([*range(8), 99, 98, 97], "b")
    cached = manager.allocate_cached_prefix(second)
    manager.record_lookup(second.num_tokens, cached)
    assert cached == 8
    assert second.block_table == first.block_table[:2]
    assert manager.stats().hits == 8
    assert manager.stats().queries == 11
    # Shared blocks are counted once.
    assert manager.append_slots(second, second.num_uncomputed_tokens)
    assert manager.num_used_blocks == 3 + 1


def test_full_prompt_hit_leaves_last_block_to_compute() -> None:
    manager = BlockManager(num_blocks=8, block_size=4)
    compute_all(manager, make_seq(list(range(8)), "a"))
    again = make_seq(list(range(8)), "b")
    assert manager.allocate_cached_prefix(again) == 4  # one token at least must be computed
    assert again.num_uncomputed_tokens == 4


def test_namespace_separates_adapters() -> None:
    manager = BlockManager(num_blocks=8, block_size=4)
    compute_all(manager, make_seq(list(range(9)), "a", namespace=1))
    assert manager.allocate_cached_prefix(make_seq(list(range(9)), "b", namespace=2)) == 0
    assert manager.allocate_cached_prefix(make_seq(list(range(9)), "c", namespace=1)) == 8


def test_freed_cached_blocks_survive_until_evicted_lru() -> None:
    manager = BlockManager(num_blocks=4, block_size=2)
    old = make_seq([1, 2, 3, 4, 5], "old")  # blocks: [1,2] [3,4] [5]
    compute_all(manager, old)
    manager.free(old)
    assert manager.num_free_blocks == 4
    # A new unrelated sequence takes the uncached block first, then evicts the oldest cached tail.
    fresh = make_seq([7, 7], "fresh")
    assert manager.append_slots(fresh, 2)
    hit = make_seq([1, 2, 3, 4, 9], "hit")
    assert manager.allocate_cached_prefix(hit) == 4
    manager.free(hit)
    filler = make_seq([8] * 6, "filler")
    assert manager.append_slots(filler, 6)  # takes all three remaining blocks, evicting both cached
    assert manager.allocate_cached_prefix(make_seq([1, 2, 3, 4, 9], "miss")) == 0


def test_tail_blocks_are_evicted_before_prefix_blocks() -> None:
    manager = BlockManager(num_blocks=3, block_size=2)
    seq = make_seq([1, 2, 3, 4, 5], "s")
    compute_all(manager, seq)
    manager.free(seq)
    # Needs one block: the partial uncached block is reused first; then the tail [3,4] is evicted.
    assert manager.append_slots(make_seq([9], "x"), 1)
    assert manager.append_slots(make_seq([9], "y"), 1)
    assert manager.allocate_cached_prefix(make_seq([1, 2, 3, 4, 6], "z")) == 2


def test_prefix_caching_off_never_hits() -> None:
    manager = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=False)
    compute_all(manager, make_seq(list(range(9)), "a"))
    assert manager.allocate_cached_prefix(make_seq(list(range(9)), "b")) == 0
    manager.record_lookup(9, 0)
    assert manager.stats().queries == 0
