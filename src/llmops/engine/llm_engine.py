"""``LLMEngine``: the synchronous core. One ``step()`` = schedule → run → postprocess.

Token ids in, token ids out: tokenisation, text and stop strings live in the backend. Not
thread-safe: one thread (the engine loop) owns it. A failure while running a batch is retried
chunk by chunk, so only the request that fails ends with finish reason "error".
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel

from llmops.engine.adapters import AdapterSet
from llmops.engine.admission import AdmissionControl
from llmops.engine.block_manager import BlockManager
from llmops.engine.config import EngineConfig, resolve_max_model_len
from llmops.engine.device import place_module
from llmops.engine.model_runner import ModelRunner
from llmops.engine.packed_linear import prepack_linear_weights
from llmops.engine.sampler import SampledToken, Sampler
from llmops.engine.scheduler import ScheduledChunk, Scheduler
from llmops.engine.sequence import Sequence
from llmops.engine.speculative import Speculator
from llmops.engine.types import EngineStats, FinishReason
from llmops.errors import Conflict, InvalidInput

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepOutput:
    """What one step produced for one request: a token, an end, or both."""

    request_id: str
    token_id: int | None
    num_prompt_tokens: int
    num_output_tokens: int
    num_cached_tokens: int = 0
    logprob: float | None = None
    top_logprobs: tuple[tuple[int, float], ...] = ()
    finish_reason: FinishReason | None = None
    error: str | None = None


class LLMEngine:
    """Continuous batching over a paged KV cache for one transformers causal LM."""

    def __init__(
        self,
        model: PreTrainedModel,
        config: EngineConfig,
        eos_token_ids: frozenset[int] = frozenset(),
        draft_model: PreTrainedModel | None = None,
    ) -> None:
        self.config = config
        self.eos_token_ids = eos_token_ids
        self.placement = config.placement()
        model = self._prepared(model)
        self.adapters = AdapterSet(model, self.placement)
        self.runner = ModelRunner(
            self.adapters, self._num_blocks(model), config.block_size, self.placement, config.decode_kernel
        )
        text_config = model.config.get_text_config()
        window = getattr(text_config, "sliding_window", None) if _uses_sliding_window(text_config) else None
        max_len = resolve_max_model_len(config, getattr(text_config, "max_position_embeddings", None), window)
        # A sequence can never hold more positions than the whole cache.
        self.max_model_len = min(max_len, self.runner.num_blocks * config.block_size)
        self.vocab_size = int(text_config.vocab_size)
        self.block_manager = BlockManager(
            self.runner.num_blocks, config.block_size, config.enable_prefix_caching
        )
        self.admission = AdmissionControl(config.max_queue_requests, config.max_queue_tokens)
        self.scheduler = Scheduler(
            self.block_manager, config.max_num_seqs, config.max_num_batched_tokens, on_start=self._on_start
        )
        self.sampler = Sampler(config.seed, self.placement.device)
        self.speculator = self._speculator(draft_model)
        self._steps = 0
        self._last_batch_size = 0
        self._prompt_tokens_total = 0
        self._generation_tokens_total = 0
        self._preemptions_total = 0

    def _prepared(self, model: PreTrainedModel) -> PreTrainedModel:
        """``model`` on the engine's placement, its linear weights packed when the config asks."""
        model = place_module(model, self.placement)
        if self.config.prepack_weights:
            prepack_linear_weights(model, self.placement)
        return model

    def _speculator(self, draft_model: PreTrainedModel | None) -> Speculator | None:
        """The draft side of speculative decoding (config.speculative names the draft model)."""
        if draft_model is None:
            return None
        if self.config.speculative is None:
            raise ValueError("a draft model needs config.speculative (its k)")
        draft_vocab = int(draft_model.config.get_text_config().vocab_size)
        if draft_vocab != self.vocab_size:
            raise InvalidInput(
                f"speculative.draft: the draft model's vocabulary has {draft_vocab} tokens, the served "
                f"model's {self.vocab_size}; use a draft trained on the same tokenizer",
                param="speculative.draft",
            )
        # The draft cache gets as many blocks as the target's: it never holds more positions.
        return Speculator(
            self._prepared(draft_model),
            self.config.speculative.k,
            self.runner.num_blocks,
            self.config.block_size,
            self.placement,
            self.sampler,
            self.config.decode_kernel,
        )

    def _num_blocks(self, model: PreTrainedModel) -> int:
        text = model.config.get_text_config()
        kv_heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        width = torch.tensor([], dtype=self.placement.dtype).element_size()
        return self.config.kv_blocks_for(text.num_hidden_layers, kv_heads, head_dim, width)

    def add(self, seq: Sequence) -> None:
        """Queue a validated, admitted sequence."""
        seq.max_model_len = self.max_model_len
        seq.eos_token_ids = self.eos_token_ids
        seq.cache_namespace = self.adapters.namespace(seq.adapter)
        if seq.generator is not None and seq.generator.device != self.placement.device:
            # A seeded request draws on the sampler's device; the seed alone defines the stream.
            seq.generator = torch.Generator(self.placement.device).manual_seed(seq.generator.initial_seed())
        self.scheduler.add(seq)

    def load_adapter(self, name: str, path: Path) -> None:
        self.adapters.load(name, path)

    def unload_adapter(self, name: str) -> None:
        users = [s.request_id for s in self.scheduler.all_sequences() if s.adapter == name]
        if users:
            raise Conflict(
                f"adapter {name!r} is serving {len(users)} request(s); retry when they end", param="model"
            )
        self.adapters.unload(name)

    def has_work(self) -> bool:
        return self.scheduler.has_work()

    def abort(self, request_id: str, reason: FinishReason = "abort") -> Sequence | None:
        """End a request now and free its blocks; returns it (None when unknown or done)."""
        seq = self.scheduler.get(request_id)
        if seq is None:
            return None
        if not seq.started:
            self.admission.release(seq.num_prompt_tokens)
        self.scheduler.finish(seq, reason)
        return seq

    def expire(self, now: float) -> list[StepOutput]:
        """Abort every request whose deadline has passed."""
        expired = [s for s in self.scheduler.all_sequences() if s.deadline is not None and s.deadline <= now]
        for seq in expired:
            self.abort(seq.request_id)
        return [self._final(seq, "abort") for seq in expired]

    def next_deadline(self) -> float | None:
        deadlines = [s.deadline for s in self.scheduler.all_sequences() if s.deadline is not None]
        return min(deadlines) if deadlines else None

    def step(self) -> list[StepOutput]:
        """Run one iteration and return one output per request that advanced or ended."""
        outputs = self.expire(time.monotonic())
        plan = self.scheduler.schedule()
        if plan.is_empty:
            return outputs
        self._steps += 1
        self._preemptions_total += len(plan.preempted)
        self._last_batch_size = len(plan.chunks)
        chunks = self._speculate(plan.chunks)
        try:
            done = [(chunks, self._run(chunks))]
        except Exception:
            logger.exception("engine step failed; retrying its %d requests one by one", len(chunks))
            done = self._run_isolated(chunks, outputs)
        for step_chunks, sampled in done:
            self.scheduler.complete_chunks([c for c in step_chunks if not c.draft_token_ids])
            outputs.extend(self._postprocess(sampled))
        if self.speculator is not None:
            self.speculator.release_finished()
        return outputs

    def _speculate(self, chunks: list[ScheduledChunk]) -> list[ScheduledChunk]:
        """Decodes with drafts to verify (speculative decoding); the plan itself when the draft fails."""
        if self.speculator is None:
            return chunks
        try:
            return self.speculator.propose(chunks, self.block_manager, self.max_model_len)
        except Exception:
            logger.exception("the draft model failed; this step decodes without speculation")
            return chunks

    def _run(self, chunks: list[ScheduledChunk]) -> list[tuple[ScheduledChunk, list[SampledToken]]]:
        """Forward ``chunks``; each sampling chunk's tokens (one, or a verified draft's several)."""
        sample_chunks, logits = self.runner.execute(chunks)
        rows: list[int] = []  # first logits row of every sampling chunk
        offset = 0
        for chunk in sample_chunks:
            rows.append(offset)
            offset += chunk.num_logits
        plain = [i for i, chunk in enumerate(sample_chunks) if not chunk.draft_token_ids]
        tokens: dict[int, list[SampledToken]] = {}
        if plain:
            index = torch.tensor([rows[i] for i in plain], dtype=torch.long, device=logits.device)
            picked = self.sampler(logits[index], [sample_chunks[i].seq for i in plain])
            tokens = {i: [token] for i, token in zip(plain, picked, strict=True)}
        for i, chunk in enumerate(sample_chunks):
            if chunk.draft_token_ids:
                assert self.speculator is not None
                tokens[i] = self.speculator.verify(chunk, logits[rows[i] : rows[i] + chunk.num_logits])
        return [(chunk, tokens[i]) for i, chunk in enumerate(sample_chunks)]

    def _run_isolated(
        self, chunks: list[ScheduledChunk], outputs: list[StepOutput]
    ) -> list[tuple[list[ScheduledChunk], list[tuple[ScheduledChunk, list[SampledToken]]]]]:
        """Rerun each chunk alone (rewriting the same K/V slots); a chunk that fails again ends in error."""
        done = []
        for chunk in chunks:
            try:
                done.append(([chunk], self._run([chunk])))
            except Exception as exc:
                logger.exception("request %s failed", chunk.seq.request_id)
                self.abort(chunk.seq.request_id, reason="error")
                outputs.append(self._final(chunk.seq, "error", f"{type(exc).__name__}: {exc}"))
        return done

    def _postprocess(self, sampled: list[tuple[ScheduledChunk, list[SampledToken]]]) -> list[StepOutput]:
        """Append each chunk's tokens in order (a stop rule drops the rest); then record what a
        verified draft computed and roll its rejected slots back."""
        outputs = []
        for chunk, tokens in sampled:
            seq = chunk.seq
            for token in tokens:
                reason = self.scheduler.append_token(seq, token.token_id)
                self._generation_tokens_total += 1
                outputs.append(
                    StepOutput(
                        request_id=seq.request_id,
                        token_id=token.token_id,
                        num_prompt_tokens=seq.num_prompt_tokens,
                        num_output_tokens=seq.num_output_tokens,
                        num_cached_tokens=seq.num_cached_tokens,
                        logprob=token.logprob,
                        top_logprobs=token.top_logprobs,
                        finish_reason=reason,
                    )
                )
                if reason is not None:
                    break
            if chunk.draft_token_ids:
                assert self.speculator is not None
                if not seq.is_finished:
                    self.scheduler.complete_verified(chunk, len(tokens) - 1)
                self.speculator.after_verify(chunk, len(tokens) - 1)
        return outputs

    def _final(self, seq: Sequence, reason: FinishReason, error: str | None = None) -> StepOutput:
        return StepOutput(
            request_id=seq.request_id,
            token_id=None,
            num_prompt_tokens=seq.num_prompt_tokens,
            num_output_tokens=seq.num_output_tokens,
            num_cached_tokens=seq.num_cached_tokens,
            finish_reason=reason,
            error=error,
        )

    def _on_start(self, seq: Sequence) -> None:
        self.admission.release(seq.num_prompt_tokens)
        self._prompt_tokens_total += seq.num_prompt_tokens

    def stats(self) -> EngineStats:
        cache = self.block_manager.stats()
        return EngineStats(
            waiting=len(self.scheduler.waiting),
            running=len(self.scheduler.running),
            kv_blocks_total=self.block_manager.num_blocks,
            kv_blocks_used=self.block_manager.num_used_blocks,
            prefix_cache_queries=cache.queries,
            prefix_cache_hits=cache.hits,
            last_batch_size=self._last_batch_size,
            steps=self._steps,
            prompt_tokens_total=self._prompt_tokens_total,
            generation_tokens_total=self._generation_tokens_total,
            preemptions_total=self._preemptions_total,
            **self._speculation_stats(),
        )

    def _speculation_stats(self) -> dict[str, int]:
        if self.speculator is None:
            return {}
        spec = self.speculator.stats()
        return {
            "spec_verifications_total": spec.verifications,
            "spec_proposed_tokens_total": spec.proposed_tokens,
            "spec_accepted_tokens_total": spec.accepted_tokens,
            "spec_emitted_tokens_total": spec.emitted_tokens,
        }


def _uses_sliding_window(text_config: object) -> bool:
    if getattr(text_config, "sliding_window", None) is None:
        return False
    # Qwen2-style configs carry a window but only use it when use_sliding_window is set.
    return bool(getattr(text_config, "use_sliding_window", True))
