"""Routing decisions: which arm (canary split, sticky per user) and which replica gets a request.

Replicas are chosen by least outstanding requests among the available ones (healthy by active
checks and not ejected by the circuit breaker); ties are broken at random. With prefix affinity a
request goes to the replica that rendezvous hashing (a consistent hash) picks for its prompt
prefix, unless that replica is more than ``AFFINITY_SLACK`` requests busier than the least loaded.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from llmops.gateway.upstreams import Upstream

AFFINITY_SLACK = 4


def unit_hash(text: str) -> float:
    """A stable hash of ``text`` mapped to [0, 1)."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(eq=False)
class Replica:
    """A replica with the gateway's view of it: load, health and circuit-breaker state."""

    upstream: Upstream
    outstanding: int = 0
    healthy: bool = True
    probe_failures: int = 0  # consecutive failed active health probes
    failures: int = 0
    ejected_until: float = 0.0
    last_error: str | None = field(default=None)
    # the version this replica serves, when whoever registered it said (a supervisor does); requests
    # it answers are recorded with it rather than with its arm's current alias resolution
    model_version: str | None = field(default=None)

    @property
    def name(self) -> str:
        return self.upstream.name

    def available(self, now: float | None = None) -> bool:
        return self.healthy and (now if now is not None else time.monotonic()) >= self.ejected_until

    def record_success(self) -> None:
        self.failures = 0
        self.last_error = None

    def record_failure(self, error: str, threshold: int, cooldown_s: float) -> None:
        """Count a failure; at ``threshold`` consecutive ones the replica rests for ``cooldown_s``."""
        self.failures += 1
        self.last_error = error
        if self.failures >= threshold:
            self.ejected_until = time.monotonic() + cooldown_s


def pick_replica(
    replicas: Sequence[Replica],
    *,
    exclude: Collection[Replica] = (),
    affinity_key: str | None = None,
    rng: random.Random | None = None,
) -> Replica | None:
    """The replica for the next attempt, or None when none is available."""
    now = time.monotonic()
    candidates = [r for r in replicas if r not in exclude and r.available(now)]
    if not candidates:
        return None
    least = min(r.outstanding for r in candidates)
    if affinity_key is not None:
        preferred = max(candidates, key=lambda r: unit_hash(f"{affinity_key}\x00{r.name}"))
        if preferred.outstanding <= least + AFFINITY_SLACK:
            return preferred
    idle = [r for r in candidates if r.outstanding == least]
    return idle[0] if len(idle) == 1 else (rng or random).choice(idle)


def choose_arm(
    weights: Sequence[float], sticky_key: str | None, *, salt: str = "", rng: random.Random | None = None
) -> int:
    """Index of the arm for a request: weighted, and the same for the same ``sticky_key``.

    A request without a sticky key (no user id) is placed at random by the same weights.
    """
    total = sum(weights)
    if total <= 0:
        raise ValueError("arm weights must add up to more than zero")
    point = unit_hash(f"{salt}\x00{sticky_key}") if sticky_key is not None else (rng or random).random()
    threshold = point * total
    running = 0.0
    for index, weight in enumerate(weights):
        running += weight
        if threshold < running:
            return index
    return len(weights) - 1
