"""Iteration-level scheduler: which tokens of which sequences the next engine step computes.

Every step: running sequences first, decodes before unfinished prefills (so streams keep flowing),
each taking tokens from the step's budget (``max_num_batched_tokens``); then waiting sequences in
arrival order, their prompts cut into chunks that fit what is left of the budget (chunked
prefill). When KV blocks run out, the newest running sequence is preempted: its blocks are freed
and it goes back to the front of the waiting queue to be recomputed (its committed blocks usually
come back from the prefix cache).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from llmops.engine.block_manager import BlockManager
from llmops.engine.sequence import Sequence, SequenceStatus
from llmops.engine.types import FinishReason


@dataclass(frozen=True)
class ScheduledChunk:
    """Compute ``num_tokens`` tokens of ``seq`` starting at position ``start``.

    ``samples``: the chunk reaches the end of the sequence, so its last logits pick the next token.
    ``draft_token_ids``: speculative decoding's proposals, computed after the sequence's own tokens
    (they are not part of the sequence until verified); every one of them yields logits too.
    """

    seq: Sequence
    start: int
    num_tokens: int
    samples: bool
    draft_token_ids: tuple[int, ...] = ()

    @property
    def token_ids(self) -> list[int]:
        """The tokens this chunk computes: the sequence's own, then the drafts."""
        own = self.num_tokens - len(self.draft_token_ids)
        return [*self.seq.token_ids[self.start : self.start + own], *self.draft_token_ids]

    @property
    def num_logits(self) -> int:
        """Rows of logits the chunk yields: its last, or all of a verified draft (drafts + 1)."""
        return len(self.draft_token_ids) + 1 if self.samples else 0

    @classmethod
    def plan(cls, seq: Sequence, num_tokens: int) -> ScheduledChunk:
        start = seq.num_computed_tokens
        return cls(seq, start, num_tokens, start + num_tokens == seq.num_tokens)


@dataclass
class SchedulerOutput:
    """The plan of one step. ``chunks`` keep the order the runner lays tokens out in."""

    chunks: list[ScheduledChunk] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def num_batched_tokens(self) -> int:
        return sum(chunk.num_tokens for chunk in self.chunks)

    @property
    def is_empty(self) -> bool:
        return not self.chunks


class Scheduler:
    """Owns the waiting queue and the running batch; the block manager owns the blocks."""

    def __init__(
        self,
        block_manager: BlockManager,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        on_start: Callable[[Sequence], None] | None = None,
    ) -> None:
        self.block_manager = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        # Called once per sequence when it first leaves the waiting queue (admission accounting).
        self._on_start = on_start
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self._by_id: dict[str, Sequence] = {}

    def add(self, seq: Sequence) -> None:
        if seq.request_id in self._by_id:
            raise ValueError(f"request id {seq.request_id!r} is already in the engine")
        self._by_id[seq.request_id] = seq
        self.waiting.append(seq)

    def get(self, request_id: str) -> Sequence | None:
        return self._by_id.get(request_id)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def all_sequences(self) -> list[Sequence]:
        return list(self._by_id.values())

    def schedule(self) -> SchedulerOutput:
        """Plan the next step (see the module docstring for the policy)."""
        out = SchedulerOutput()
        budget = self._schedule_running(out, self.max_num_batched_tokens)
        if not out.preempted:
            self._schedule_waiting(out, budget)
        return out

    def _schedule_running(self, out: SchedulerOutput, budget: int) -> int:
        # Decodes (one token left to compute) before prefills still in progress.
        queue = deque(sorted(self.running, key=lambda s: s.num_uncomputed_tokens > 1))
        while queue and budget > 0:
            seq = queue.popleft()
            num_tokens = min(seq.num_uncomputed_tokens, budget)
            while not self.block_manager.append_slots(seq, num_tokens):
                # The newest sequence not yet planned gives its blocks back; if none is left, this one.
                victim = queue.pop() if queue else seq
                self._preempt(victim)
                out.preempted.append(victim)
                if victim is seq:
                    break
            else:
                out.chunks.append(ScheduledChunk.plan(seq, num_tokens))
                budget -= num_tokens
        return budget

    def _schedule_waiting(self, out: SchedulerOutput, budget: int) -> None:
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            cached = self.block_manager.allocate_cached_prefix(seq)
            num_tokens = min(seq.num_uncomputed_tokens, budget)
            if not self.block_manager.append_slots(seq, num_tokens):
                # Do not pin cached blocks while waiting: give them back until there is room.
                self.block_manager.free(seq)
                seq.num_computed_tokens = 0
                break
            self.waiting.popleft()
            self.block_manager.record_lookup(seq.num_tokens, cached)
            seq.status = SequenceStatus.RUNNING
            if not seq.started:
                seq.started = True
                seq.num_cached_tokens = cached
                if self._on_start is not None:
                    self._on_start(seq)
            self.running.append(seq)
            out.chunks.append(ScheduledChunk.plan(seq, num_tokens))
            budget -= num_tokens

    def _preempt(self, seq: Sequence) -> None:
        self.block_manager.free(seq)
        seq.reset_for_recompute()
        self.running.remove(seq)
        self.waiting.appendleft(seq)

    def complete_chunks(self, chunks: list[ScheduledChunk]) -> None:
        """Record that the step computed ``chunks``: advance progress, publish full blocks."""
        for chunk in chunks:
            chunk.seq.num_computed_tokens = chunk.start + chunk.num_tokens
            self.block_manager.commit(chunk.seq)

    def complete_verified(self, chunk: ScheduledChunk, num_accepted: int) -> None:
        """Record a verified draft: the sequence's token and ``num_accepted`` drafts are computed; the
        K/V slots of rejected drafts are given back (they lie past the computed tokens)."""
        seq = chunk.seq
        seq.num_computed_tokens = chunk.start + 1 + num_accepted
        self.block_manager.commit(seq)
        self.block_manager.truncate(seq, seq.num_tokens)

    def append_token(self, seq: Sequence, token_id: int) -> FinishReason | None:
        """Add a sampled token; finishes (and frees) the sequence when a stop rule fires."""
        reason = seq.append_token(token_id)
        if reason is not None:
            self.finish(seq, reason)
        return reason

    def finish(self, seq: Sequence, reason: FinishReason) -> None:
        """End ``seq`` now and free its blocks (idempotent)."""
        if seq.is_finished:
            return
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.block_manager.free(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
        self._by_id.pop(seq.request_id, None)

    def abort(self, request_id: str, reason: FinishReason = "abort") -> Sequence | None:
        """End a request wherever it is; returns it, or None when it is unknown or already done."""
        seq = self._by_id.get(request_id)
        if seq is None:
            return None
        self.finish(seq, reason)
        return seq
