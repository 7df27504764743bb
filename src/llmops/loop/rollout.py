"""The rollout seam of a cycle: hand a gated candidate to a rollout and wait for its outcome.

``start`` records the rollout and returns its id (kept in the cycle's payload before waiting, so a
cycle killed while the candidate is on canary re-attaches to the same rollout on restart instead of
starting a second one); ``wait`` drives or watches it to its end. The rollout controller
implementation lives with the deploy package; tests use a fake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from llmops.deploy.policy import RolloutPolicy


@dataclass(frozen=True)
class RolloutOutcome:
    """How a rollout ended: promoted or not, its final state, why, and its numbers."""

    promoted: bool
    state: str
    reason: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)


class RolloutLauncher(Protocol):
    def start(self, deployment: str, candidate: str, policy: RolloutPolicy, *, reason: str) -> str:
        """Record a rollout of ``candidate`` on ``deployment``; returns its id."""
        ...

    def wait(self, rollout_id: str) -> RolloutOutcome:
        """Drive (or watch) the rollout until it ends."""
        ...
