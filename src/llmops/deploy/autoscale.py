"""Autoscaling replicas on one machine: a pure decision over the replicas' load signals (engine queue
depth, running requests per replica, p95 TTFT against the SLO) with a cooldown.

``decide`` takes the numbers (``LoadSample``, read from the replicas' /metrics by ``load.LoadSampler``:
``QUEUE_DEPTH_METRIC``, ``RUNNING_METRIC``, ``TTFT_METRIC`` of ``llmops.serve.metrics``) and returns a
``ScaleDecision`` with the reason and the numbers that decided it; the caller (``autoscaler.Autoscaler``,
on the supervisor's loop) applies it through ``scale``, exports it as a metric and records it as an
audit event. Nothing here sleeps or does I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class AutoscalePolicy(BaseModel):
    """When to add or remove a replica (within the spec's replicas.min..max)."""

    model_config = ConfigDict(extra="forbid")

    queue_per_replica: float = Field(2.0, gt=0, description="Waiting requests per replica to scale out.")
    running_per_replica: float = Field(8.0, gt=0, description="Running requests per replica to scale out.")
    scale_in_ratio: float = Field(
        0.3, gt=0, lt=1, description="Scale in when load per replica is below this share of the targets."
    )
    cooldown_s: float = Field(30.0, ge=0, description="Least time between two scale changes.")
    ttft_window_s: float = Field(
        30.0, gt=0, description="p95 TTFT is taken over the first tokens of this last stretch of time."
    )


@dataclass(frozen=True)
class LoadSample:
    """The deployment's load now: sums over its ready replicas, and p95 TTFT (None: no traffic)."""

    replicas: int
    waiting: float
    running: float
    p95_ttft_ms: float | None


@dataclass(frozen=True)
class ScaleDecision:
    current: int
    desired: int
    reason: str
    numbers: dict[str, float]

    @property
    def changes(self) -> bool:
        return self.desired != self.current


def decide(
    sample: LoadSample,
    policy: AutoscalePolicy,
    *,
    minimum: int,
    maximum: int,
    ttft_slo_ms: float | None,
    since_last_change_s: float,
) -> ScaleDecision:
    """How many replicas should run: out when queue, running or TTFT pass their targets, in when all
    are well below; never within ``policy.cooldown_s`` of the last change, always in min..max."""
    current = sample.replicas
    per = max(current, 1)
    numbers = {
        "waiting_per_replica": sample.waiting / per,
        "running_per_replica": sample.running / per,
        "p95_ttft_ms": sample.p95_ttft_ms if sample.p95_ttft_ms is not None else -1.0,
        "since_last_change_s": since_last_change_s,
    }

    def bounded(n: int, reason: str) -> ScaleDecision:
        return ScaleDecision(current, max(minimum, min(maximum, n)), reason, numbers)

    if current < minimum or current > maximum:
        return bounded(current, "outside replicas.min..max")
    if since_last_change_s < policy.cooldown_s:
        return ScaleDecision(current, current, "cooldown", numbers)
    need = max(
        math.ceil(sample.waiting / policy.queue_per_replica),
        math.ceil(sample.running / policy.running_per_replica),
    )
    ttft_over = (
        ttft_slo_ms is not None and sample.p95_ttft_ms is not None and sample.p95_ttft_ms > ttft_slo_ms
    )
    if need > current or ttft_over:
        reason = "p95 TTFT above the SLO" if ttft_over and need <= current else "load above target"
        return bounded(max(need, current + 1), reason)
    low = policy.scale_in_ratio
    quiet = (
        numbers["waiting_per_replica"] <= low * policy.queue_per_replica
        and numbers["running_per_replica"] <= low * policy.running_per_replica
    )
    ttft_fine = ttft_slo_ms is None or sample.p95_ttft_ms is None or sample.p95_ttft_ms <= 0.5 * ttft_slo_ms
    if quiet and ttft_fine and current > minimum:
        return bounded(current - 1, "load below target")
    return ScaleDecision(current, current, "steady", numbers)
