"""Scheduler: continuous batching, chunked prefill, decode priority, preemption, admission (no model)."""

from __future__ import annotations

import pytest

from llmops.engine.admission import AdmissionControl
from llmops.engine.block_manager import BlockManager
from llmops.engine.scheduler import Scheduler, SchedulerOutput
from llmops.engine.sequence import Sequence, SequenceStatus
from llmops.engine.types import SamplingParams
from llmops.errors import Overloaded


def make_scheduler(
    num_blocks: int = 64, block_size: int = 4, max_num_seqs: int = 8, budget: int = 32
) -> Scheduler:
    return Scheduler(
        BlockManager(num_blocks, block_size), max_num_seqs=max_num_seqs, max_num_batched_tokens=budget
    )


def make_seq(request_id: str, prompt_len: int, max_tokens: int = 4, first_token: int = 0) -> Sequence:
    tokens = [first_token + i for i in range(prompt_len)]
    return Sequence(request_id, tokens, SamplingParams(max_tokens=max_tokens, temperature=0.0))


def fake_step(scheduler: Scheduler, token: int = 1) -> SchedulerOutput:
    """Schedule, pretend to run, and append `token` to every sequence whose chunk samples."""
    out = scheduler.schedule()
    scheduler.complete_chunks(out.chunks)
    for chunk in out.chunks:
        if chunk.samples:
            scheduler.append_token(chunk.seq, token)
    return out


def test_requests_join_and_leave_the_batch_every_step() -> None:
    scheduler = make_scheduler()
    a = make_seq("a", 5, max_tokens=2)
    scheduler.add(a)
    out = fake_step(scheduler)
    assert [(c.seq.request_id, c.start, c.num_tokens) for c in out.chunks] == [("a", 0, 5)]
    b = make_seq("b", 3, max_tokens=3, first_token=100)
    scheduler.add(b)
    out = fake_step(scheduler)  # a decodes its last token while b prefills
    assert [(c.seq.request_id, c.num_tokens) for c in out.chunks] == [("a", 1), ("b", 3)]
    assert a.is_finished and a.finish_reason == "length"
    out = fake_step(scheduler)
    assert [c.seq.request_id for c in out.chunks] == ["b"]
    assert scheduler.block_manager.num_used_blocks == 1  # b has computed 4 positions: one block of 4
    fake_step(scheduler)
    assert b.is_finished and not scheduler.has_work()
    assert scheduler.block_manager.num_used_blocks == 0


def test_chunked_prefill_respects_the_token_budget() -> None:
    scheduler = make_scheduler(budget=8)
    long = make_seq("long", 20)
    scheduler.add(long)
    chunks = [fake_step(scheduler).chunks for _ in range(3)]
    assert [(c[0].start, c[0].num_tokens, c[0].samples) for c in chunks] == [
        (0, 8, False),
        (8, 8, False),
        (16, 4, True),
    ]
    assert long.num_output_tokens == 1


def test_decodes_are_scheduled_before_new_prefills() -> None:
    scheduler = make_scheduler(budget=8)
    for i in range(3):
        scheduler.add(make_seq(f"d{i}", 2, max_tokens=10, first_token=10 * i))
    fake_step(scheduler)  # three prefills of 2 tokens
    scheduler.add(make_seq("big", 30))
    out = fake_step(scheduler)
    assert [(c.seq.request_id, c.num_tokens) for c in out.chunks] == [
        ("d0", 1),
        ("d1", 1),
        ("d2", 1),
        ("big", 5),
    ]
    assert out.num_batched_tokens == 8


def test_max_num_seqs_bounds_the_running_batch() -> None:
    scheduler = make_scheduler(max_num_seqs=2)
    for i in range(4):
        scheduler.add(make_seq(f"s{i}", 2, first_token=10 * i))
    out = fake_step(scheduler)
    assert len(out.chunks) == 2 and len(scheduler.waiting) == 2


def test_preemption_frees_blocks_and_requeues_newest_first() -> None:
    # 4 blocks of 2 tokens: two sequences of 3 prompt tokens each take 2 blocks; decoding needs more.
    scheduler = make_scheduler(num_blocks=4, block_size=2, budget=16)
    old = make_seq("old", 3, max_tokens=4)
    new = make_seq("new", 3, max_tokens=4, first_token=50)
    scheduler.add(old)
    scheduler.add(new)
    fake_step(scheduler)  # both prefilled: 4 blocks used, each seq now has 4 tokens (3 computed)
    fake_step(scheduler)  # decode: position 3 still fits in block 2 of each
    out = fake_step(scheduler)  # position 4 needs a third block for each: the newest is preempted
    assert [s.request_id for s in out.preempted] == ["new"]
    assert new.status is SequenceStatus.WAITING and new.num_computed_tokens == 0 and new.block_table == []
    assert scheduler.waiting[0] is new
    assert [c.seq.request_id for c in out.chunks] == ["old"]
    while not old.is_finished:
        fake_step(scheduler)
    # The preempted sequence is recomputed from its prompt plus the tokens it had produced; its
    # committed full block comes back from the prefix cache.
    tokens_before = new.num_tokens
    out = fake_step(scheduler)
    chunk = out.chunks[0]
    assert chunk.seq is new and chunk.start == 2 and chunk.start + chunk.num_tokens == tokens_before
    while scheduler.has_work():
        fake_step(scheduler)
    assert new.num_output_tokens == 4 and new.num_preemptions == 1
    assert scheduler.block_manager.num_used_blocks == 0


def test_waiting_request_does_not_pin_cached_blocks_when_it_cannot_start() -> None:
    scheduler = make_scheduler(num_blocks=3, block_size=2, budget=16)
    first = make_seq("first", 5, max_tokens=1)
    scheduler.add(first)
    fake_step(scheduler)
    assert first.is_finished
    hog = make_seq("hog", 3, max_tokens=8, first_token=90)
    scheduler.add(hog)
    fake_step(scheduler)
    blocked = make_seq("blocked", 5, max_tokens=1)  # would hit the cache but cannot get new blocks
    scheduler.add(blocked)
    out = fake_step(scheduler)
    assert [c.seq.request_id for c in out.chunks] == ["hog"]
    assert blocked.block_table == [] and blocked.num_computed_tokens == 0


def test_abort_frees_blocks_of_running_and_waiting() -> None:
    scheduler = make_scheduler(max_num_seqs=1)
    running = make_seq("run", 6)
    waiting = make_seq("wait", 6)
    scheduler.add(running)
    scheduler.add(waiting)
    fake_step(scheduler)
    assert scheduler.block_manager.num_used_blocks == 2
    assert scheduler.abort("run") is running and running.finish_reason == "abort"
    assert scheduler.block_manager.num_used_blocks == 0
    assert scheduler.abort("wait") is waiting
    assert scheduler.abort("wait") is None
    assert not scheduler.has_work()


def test_eos_and_stop_token_ids_finish_with_stop() -> None:
    scheduler = make_scheduler()
    seq = Sequence("e", [1, 2], SamplingParams(max_tokens=10), eos_token_ids=frozenset({7}))
    scheduler.add(seq)
    fake_step(scheduler, token=7)
    assert seq.finish_reason == "stop"
    ignore = Sequence(
        "i", [1, 2], SamplingParams(max_tokens=2, ignore_eos=True), eos_token_ids=frozenset({7})
    )
    scheduler.add(ignore)
    fake_step(scheduler, token=7)
    fake_step(scheduler, token=7)
    assert ignore.finish_reason == "length"
    stop_id = Sequence("s", [1, 2], SamplingParams(max_tokens=10, stop_token_ids=(5,)))
    scheduler.add(stop_id)
    fake_step(scheduler, token=5)
    assert stop_id.finish_reason == "stop"


def test_max_model_len_finishes_with_length() -> None:
    scheduler = make_scheduler()
    seq = Sequence("m", [1, 2, 3], SamplingParams(max_tokens=100), max_model_len=5)
    scheduler.add(seq)
    fake_step(scheduler)
    fake_step(scheduler)
    assert seq.finish_reason == "length" and seq.num_tokens == 5


def test_admission_bounds_requests_and_tokens() -> None:
    admission = AdmissionControl(max_requests=2, max_tokens=100)
    admission.admit(40)
    admission.admit(40)
    with pytest.raises(Overloaded) as too_many:
        admission.admit(1)
    assert too_many.value.retry_after is not None and too_many.value.retry_after >= 1.0
    assert too_many.value.status_code == 503 and "Retry-After" in too_many.value.headers()
    admission.release(40)
    with pytest.raises(Overloaded, match="prompt tokens"):
        admission.admit(61)
    admission.admit(60)
    assert admission.queued_requests == 2 and admission.queued_tokens == 100


def test_on_start_is_called_once_per_request() -> None:
    started: list[str] = []
    scheduler = Scheduler(BlockManager(4, 2), 4, 16, on_start=lambda seq: started.append(seq.request_id))
    a = make_seq("a", 3, max_tokens=4)
    b = make_seq("b", 3, max_tokens=4, first_token=50)
    scheduler.add(a)
    scheduler.add(b)
    while scheduler.has_work():
        fake_step(scheduler)
    assert b.num_preemptions >= 1
    assert started == ["a", "b"]


def test_prefix_stats_count_admissions_not_retries() -> None:
    scheduler = make_scheduler(num_blocks=3, block_size=2, budget=16)
    hog = make_seq("hog", 4, max_tokens=1, first_token=90)
    scheduler.add(hog)
    fake_step(scheduler)  # hog finished: its two full blocks are cached
    blocker = make_seq("blocker", 5, max_tokens=8, first_token=50)
    scheduler.add(blocker)
    fake_step(scheduler)  # takes all three blocks, evicting the cache
    retry = make_seq("retry", 3, max_tokens=1, first_token=70)
    scheduler.add(retry)
    for _ in range(3):
        fake_step(scheduler)  # retry cannot get a block while blocker runs
    stats = scheduler.block_manager.stats()
    assert stats.queries == 4 + 5  # one lookup per admission so far
