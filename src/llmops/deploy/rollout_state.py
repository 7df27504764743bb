"""The rollout's persisted state: its state machine and the typed payload a controller resumes from.

States (``kind = "rollout"``)::

    pending ──► starting ──► shadow ──► canary (step 0 → 1 → … → last) ──► promoting ──► promoted
       │            │           │             │
       └► refused   └───────────┴─────────────┴──► rolling_back ──► rolled_back
                    (and from pending/starting/shadow/canary: aborting ──► aborted)

``pending``: deploy-time gates are checked (``refused`` when they fail, before anything starts);
``starting``: candidate replicas start through the ``DeployTarget`` (no traffic yet); ``shadow``:
mirrored traffic only; ``canary``: the candidate serves the current step's share (the step index is
in the payload; moving to the next step is a ``canary → canary`` transition carrying the passed
analysis); ``promoting``/``rolling_back``/``aborting`` are the idempotent finishing moves, so a
controller killed half-way through one repeats it safely.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from llmops.deploy.policy import RolloutPolicy
from llmops.deploy.spec import DeploymentSpec
from llmops.store.lifecycle import StateMachine

KIND = "rollout"
ROLLOUT_MACHINE = StateMachine(
    kind=KIND,
    initial="pending",
    edges={
        "pending": frozenset({"starting", "refused", "aborted"}),
        "starting": frozenset({"shadow", "canary", "rolling_back", "aborting"}),
        "shadow": frozenset({"canary", "promoting", "rolling_back", "aborting"}),
        "canary": frozenset({"canary", "promoting", "rolling_back", "aborting"}),
        "promoting": frozenset({"promoted"}),
        "rolling_back": frozenset({"rolled_back"}),
        "aborting": frozenset({"aborted"}),
    },
)
ACTIVE_STATES = ("shadow", "canary")


@dataclass(frozen=True)
class VersionPin:
    """One exact model version: what the rollout moves traffic from or to, pinned by digest."""

    name: str
    version: int
    digest: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass
class RolloutData:
    """The run's payload (``LifecycleRun.data``): everything a restarted controller needs."""

    deployment: str
    candidate: VersionPin
    stable: VersionPin
    policy: dict[str, Any]
    spec: dict[str, Any]
    step: int = -1  # index into policy.steps; -1 before the first canary step
    step_started_at: str | None = None  # ISO time the current stage (shadow or step) began
    last_analysis: dict[str, Any] | None = None
    finish_stage: str | None = None  # progress of a finishing move, so a resumed one skips done work
    notes: list[str] = field(default_factory=list)

    def rollout_policy(self) -> RolloutPolicy:
        return RolloutPolicy.model_validate(self.policy)

    def deployment_spec(self) -> DeploymentSpec:
        return DeploymentSpec.model_validate(self.spec)

    def started_at(self) -> datetime | None:
        return datetime.fromisoformat(self.step_started_at) if self.step_started_at else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutData:
        values = dict(data)
        values["candidate"] = VersionPin(**values["candidate"])
        values["stable"] = VersionPin(**values["stable"])
        return cls(**values)
