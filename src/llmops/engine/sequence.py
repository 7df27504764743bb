"""``Sequence``: the engine's state of one request (tokens, progress, KV blocks, stop rules).

The scheduler, block manager, runner and sampler all read and advance this one object. It holds
token ids only: text (and stop strings) belong to the backend's output processing.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

import torch

from llmops.engine.types import FinishReason, SamplingParams


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    """One request inside the engine.

    ``token_ids`` is the prompt followed by the output so far. ``num_computed_tokens`` counts the
    leading tokens whose K/V sit in the cache (prefix-cache hits included); the step computes the
    tokens after it. ``block_table[i]`` is the KV block holding positions ``i*block_size ...``.
    """

    request_id: str
    prompt_token_ids: list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    adapter: str | None = None
    # Prefix-cache namespace: KV computed under one adapter must never serve another (0 = base).
    cache_namespace: int = 0
    deadline: float | None = None
    arrival: float = field(default_factory=time.monotonic)
    max_model_len: int = 1 << 30
    eos_token_ids: frozenset[int] = frozenset()

    token_ids: list[int] = field(init=False)
    status: SequenceStatus = field(init=False, default=SequenceStatus.WAITING)
    finish_reason: FinishReason | None = field(init=False, default=None)
    num_computed_tokens: int = field(init=False, default=0)
    num_cached_tokens: int = field(init=False, default=0)
    block_table: list[int] = field(init=False, default_factory=list)
    # Chain hashes of the full token blocks (a pure function of the tokens, filled lazily).
    block_hashes: list[int] = field(init=False, default_factory=list)
    # Blocks of block_table whose K/V are complete and registered in the prefix cache.
    num_committed_blocks: int = field(init=False, default=0)
    # Whether the request ever left the waiting queue (admission counts it until then).
    started: bool = field(init=False, default=False)
    num_preemptions: int = field(init=False, default=0)
    generator: torch.Generator | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.token_ids = list(self.prompt_token_ids)
        if self.sampling.seed is not None:
            # A per-request generator: seeded draws do not depend on the other requests in a batch.
            self.generator = torch.Generator().manual_seed(self.sampling.seed)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - len(self.prompt_token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[len(self.prompt_token_ids) :]

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    def append_token(self, token_id: int) -> FinishReason | None:
        """Add a sampled token and return why the sequence stops now, if it does."""
        self.token_ids.append(token_id)
        params = self.sampling
        if not params.ignore_eos and token_id in self.eos_token_ids:
            return "stop"
        if token_id in params.stop_token_ids:
            return "stop"
        if self.num_output_tokens >= params.max_tokens or len(self.token_ids) >= self.max_model_len:
            return "length"
        return None

    def reset_for_recompute(self) -> None:
        """Forget computed K/V after preemption; the next admission recomputes (or re-hits) them."""
        self.num_computed_tokens = 0
        self.block_table = []
        self.num_committed_blocks = 0
        self.status = SequenceStatus.WAITING
        self.num_preemptions += 1
