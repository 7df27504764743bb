"""Speculative decoding: a draft model proposes tokens, the served (target) model verifies them.

Each engine step, every running sequence that is decoding (and asks for no repetition, presence or
frequency penalty, which depend on the tokens before each position) gets up to ``k`` proposals:

1. The draft model, with its own paged KV cache and block manager (no prefix caching), first
   computes whatever of the sequence it has not seen yet (the whole prompt the first time, then
   the one or two tokens the last verification added), then proposes ``k`` tokens one forward at a
   time, all speculating sequences batched together in each forward.
2. The target computes the sequence's last token and the ``k`` drafts in one forward over its
   paged KV cache (a ``ScheduledChunk`` with ``draft_token_ids``, laid out like a prefill chunk),
   beside every other sequence's prefill or decode of the same step.
3. ``rejection_sampler`` keeps a prefix of the drafts and adds one token of the target's own.
4. Rollback: the sequence's computed length stops after the kept drafts; K/V slots written for
   rejected drafts lie past it and are overwritten later, and blocks holding only rejected
   positions go back to the pool. The draft's cache keeps exactly the positions whose tokens were
   kept.

Greedy output is the target's alone; sampled output has the target's distribution. Seeded requests
stay reproducible, but draw a different stream than without speculation. Proposals are extra
tokens on top of the step's token budget (at most ``k`` per decoding sequence).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from llmops.engine.adapters import AdapterSet
from llmops.engine.block_manager import BlockManager
from llmops.engine.device import Placement
from llmops.engine.model_runner import ModelRunner
from llmops.engine.rejection_sampler import accept_greedy, accept_sampled
from llmops.engine.sampler import SampledToken, Sampler, has_penalty
from llmops.engine.scheduler import ScheduledChunk
from llmops.engine.sequence import Sequence

logger = logging.getLogger(__name__)


@dataclass
class _DraftState:
    """The draft model's view of one sequence: same tokens, its own blocks and progress."""

    target: Sequence
    draft: Sequence


@dataclass(frozen=True)
class SpeculationStats:
    """Counters: verifications (sequence-steps), tokens proposed, drafts kept, tokens emitted."""

    verifications: int = 0
    proposed_tokens: int = 0
    accepted_tokens: int = 0
    emitted_tokens: int = 0


class Speculator:
    """The draft model's runner and cache, proposals, and the acceptance of verified drafts."""

    def __init__(
        self,
        draft_model: PreTrainedModel,
        k: int,
        num_blocks: int,
        block_size: int,
        placement: Placement,
        sampler: Sampler,
        decode_kernel: bool = False,
    ) -> None:
        self.k = k
        self.runner = ModelRunner(
            AdapterSet(draft_model, placement), num_blocks, block_size, placement, decode_kernel
        )
        self.block_manager = BlockManager(num_blocks, block_size, enable_prefix_caching=False)
        config = draft_model.config.get_text_config()
        self.max_len = min(
            int(getattr(config, "max_position_embeddings", None) or 1 << 30), num_blocks * block_size
        )
        self.sampler = sampler
        self._states: dict[str, _DraftState] = {}
        self._draft_probs: dict[str, torch.Tensor] = {}  # [k, V] of sampled proposals, per request
        self._verifications = self._proposed = self._accepted = self._emitted = 0

    # ---- proposing ----------------------------------------------------------------------------

    def propose(
        self, chunks: list[ScheduledChunk], target_blocks: BlockManager, max_model_len: int
    ) -> list[ScheduledChunk]:
        """``chunks`` with each eligible decode replaced by a chunk that also verifies drafts."""
        self.release_finished()
        work: list[tuple[ScheduledChunk, int]] = []
        for chunk in chunks:
            k = self._budget(chunk, max_model_len)
            if k and self._reserve(chunk.seq, k) and target_blocks.append_slots(chunk.seq, 1 + k):
                work.append((chunk, k))
        if not work:
            return chunks
        try:
            drafts = self._draft(work)
        except Exception:
            # A half-run proposal leaves the draft caches unknown: start them over next time.
            self.reset()
            raise
        replaced = {
            id(chunk): ScheduledChunk(chunk.seq, chunk.start, 1 + len(tokens), True, tuple(tokens))
            for (chunk, _), tokens in zip(work, drafts, strict=True)
        }
        return [replaced.get(id(chunk), chunk) for chunk in chunks]

    def _budget(self, chunk: ScheduledChunk, max_model_len: int) -> int:
        """Drafts this chunk may verify: none for prefills and penalised sampling; never past the
        request's max_tokens, the context length or the draft's positions."""
        seq = chunk.seq
        if chunk.num_tokens != 1 or not chunk.samples or has_penalty(seq):
            return 0
        room = min(
            seq.sampling.max_tokens - seq.num_output_tokens,
            max_model_len - seq.num_tokens,
            self.max_len - seq.num_tokens,
        )
        return max(0, min(self.k, room - 1))

    def _reserve(self, seq: Sequence, k: int) -> bool:
        """Draft KV slots for the sequence's unseen tokens and ``k - 1`` drafts (the last draft is
        never fed back); a sequence that does not fit starts its draft state over next time."""
        state = self._states.get(seq.request_id)
        if state is None or state.target is not seq:
            self._drop(seq.request_id)
            state = _DraftState(seq, Sequence(seq.request_id, list(seq.prompt_token_ids)))
            self._states[seq.request_id] = state
        needed = seq.num_tokens + k - 1 - state.draft.num_computed_tokens
        if self.block_manager.append_slots(state.draft, needed):
            return True
        self._drop(seq.request_id)
        return False

    @torch.inference_mode()
    def _draft(self, work: list[tuple[ScheduledChunk, int]]) -> list[list[int]]:
        """Run the draft ``max k`` times, batched; returns each chunk's proposals in order."""
        states = [self._states[chunk.seq.request_id] for chunk, _ in work]
        tokens: list[list[int]] = [[] for _ in work]
        probs: list[list[torch.Tensor]] = [[] for _ in work]
        by_draft = {id(state.draft): i for i, state in enumerate(states)}
        for round_index in range(max(k for _, k in work)):
            chunks = []
            for i, (state, (_, k)) in enumerate(zip(states, work, strict=True)):
                if k <= round_index:
                    continue
                draft = state.draft
                draft.token_ids = [*state.target.token_ids, *tokens[i]]
                start = draft.num_computed_tokens
                chunks.append(ScheduledChunk(draft, start, draft.num_tokens - start, True))
            sampled, logits = self.runner.execute(chunks)
            choices = logits.argmax(dim=-1).tolist()  # greedy proposals: one copy to the host per round
            for chunk, row, choice in zip(sampled, logits, choices, strict=True):
                i = by_draft[id(chunk.seq)]
                chunk.seq.num_computed_tokens = chunk.start + chunk.num_tokens
                token, q = self._draw(states[i].target, row, int(choice))
                tokens[i].append(token)
                if q is not None:
                    probs[i].append(q)
        for state, rows in zip(states, probs, strict=True):
            if rows:
                self._draft_probs[state.target.request_id] = torch.stack(rows)
        return tokens

    def _draw(self, seq: Sequence, logits: torch.Tensor, argmax: int) -> tuple[int, torch.Tensor | None]:
        """The draft's proposal for ``seq``: its ``argmax`` (greedy) or a draw from its distribution."""
        if seq.sampling.temperature == 0:
            return argmax, None
        q = self.sampler.probabilities(logits.unsqueeze(0), [seq])[0]
        generator = seq.generator or self.sampler.generator
        return int(torch.multinomial(q, 1, generator=generator)), q

    # ---- verifying ----------------------------------------------------------------------------

    def verify(self, chunk: ScheduledChunk, logits: torch.Tensor) -> list[SampledToken]:
        """The tokens to emit for a verified chunk; ``logits`` ``[k+1, V]`` are the target's."""
        seq, drafts = chunk.seq, list(chunk.draft_token_ids)
        q = self._draft_probs.pop(seq.request_id, None)
        if seq.sampling.temperature == 0:
            emitted = accept_greedy(drafts, logits)
        else:
            assert q is not None and len(q) == len(drafts)
            p = self.sampler.probabilities(logits, [seq] * len(logits))
            emitted = accept_sampled(drafts, q, p, seq.generator or self.sampler.generator)
        self._verifications += 1
        self._proposed += len(drafts)
        self._accepted += len(emitted) - 1
        self._emitted += len(emitted)
        raw = None
        if seq.sampling.logprobs or seq.sampling.top_logprobs:
            raw = torch.log_softmax(logits[: len(emitted)], dim=-1)
        return Sampler.with_logprobs(emitted, raw, [seq] * len(emitted))

    def after_verify(self, chunk: ScheduledChunk, num_accepted: int) -> None:
        """Roll the draft's cache back to the positions whose tokens were kept."""
        state = self._states.get(chunk.seq.request_id)
        if state is None:
            return
        if state.target.is_finished:
            self._drop(chunk.seq.request_id)
            return
        first_draft = chunk.start + 1  # position of the first draft
        # The draft computed the sequence and drafts 1 .. k-1; of those, the kept ones stay valid.
        computed = first_draft + min(num_accepted, len(chunk.draft_token_ids) - 1)
        draft = state.draft
        draft.token_ids = list(state.target.token_ids)
        draft.num_computed_tokens = min(draft.num_computed_tokens, computed)
        self.block_manager.truncate(draft, draft.num_computed_tokens)

    # ---- state --------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every draft cache (after a failure)."""
        for request_id in list(self._states):
            self._drop(request_id)

    def release_finished(self) -> None:
        """Free the draft caches of sequences that ended."""
        for request_id, state in list(self._states.items()):
            if state.target.is_finished:
                self._drop(request_id)

    def _drop(self, request_id: str) -> None:
        state = self._states.pop(request_id, None)
        self._draft_probs.pop(request_id, None)
        if state is not None:
            self.block_manager.free(state.draft)

    def stats(self) -> SpeculationStats:
        return SpeculationStats(self._verifications, self._proposed, self._accepted, self._emitted)
