"""The rollout seam of a cycle: hand a gated candidate to a rollout and wait for its outcome.

``start`` records the rollout and returns its id (kept in the cycle's payload before waiting, so a
cycle killed while the candidate is on canary re-attaches to the same rollout on restart instead of
starting a second one); ``wait`` drives or watches it to its end. The rollout controller
implementation (``ControllerRollout``) drives the deploy package's controller; tests use a fake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llmops.deploy.policy import RolloutPolicy
from llmops.deploy.rollout import RolloutController, RolloutEnv
from llmops.deploy.spec import DeploymentSpec, load_spec
from llmops.deploy.targets import open_target
from llmops.errors import InvalidInput
from llmops.registry import Registry
from llmops.store.home import Home


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


class ControllerRollout:
    """The deploy package's rollout controller: deploy-time gates, shadow/canary steps, analysis,
    promotion or rollback, all recorded as a ``rollout`` lifecycle run."""

    def __init__(self, controller: RolloutController, spec: DeploymentSpec, *, actor: str) -> None:
        self.controller = controller
        self.spec = spec
        self.actor = actor

    @classmethod
    def from_home(
        cls, home: Home, spec_path: Path, *, target: str = "local", actor: str
    ) -> ControllerRollout:
        env = RolloutEnv(home.store, Registry.from_home(home), open_target(target, home))
        return cls(RolloutController(env), load_spec(spec_path), actor=actor)

    def start(self, deployment: str, candidate: str, policy: RolloutPolicy, *, reason: str) -> str:
        if deployment != self.spec.name:
            raise InvalidInput(
                f"the deployment spec describes {self.spec.name!r}, not {deployment!r}",
                param="deployment_spec",
            )
        record = self.controller.start(self.spec, candidate, actor=self.actor, policy=policy, reason=reason)
        self.controller.runs.release(record.id, self.controller.env.holder)
        return record.id

    def wait(self, rollout_id: str) -> RolloutOutcome:
        record = self.controller.drive(rollout_id)
        history = self.controller.runs.history(rollout_id)
        last = history[-1] if history else None
        numbers = {"rollout_steps": [t.to_state for t in history], **(last.numbers if last else {})}
        reason = last.reason if last else None
        return RolloutOutcome(record.state == "promoted", record.state, reason, numbers)
