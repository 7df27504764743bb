"""Fakes at the cycle's seams: a retrainer that registers a real (tiny) version, an evaluator that
returns chosen numbers, and a rollout that promotes by moving the alias or rolls back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tests.factories import make_tiny_model

from llmops.deploy.policy import RolloutPolicy
from llmops.loop.evaluation import Evaluation, SuiteComparison
from llmops.loop.retrain import Candidate, RetrainRequest
from llmops.loop.rollout import RolloutOutcome
from llmops.registry import Registry
from llmops.store.home import Home


@dataclass
class FakeRetrainer:
    home: Home
    root: Path
    calls: list[RetrainRequest] = field(default_factory=list)
    error: BaseException | None = None

    def retrain(self, request: RetrainRequest) -> Candidate:
        self.calls.append(request)
        if self.error is not None:
            raise self.error
        seed = len(Registry.from_home(self.home).list_versions("bot")) + 10
        model = make_tiny_model(self.root / f"candidate-{seed}", seed=seed)
        version = Registry.from_home(self.home).register(model, "bot", base=request.champion)
        return Candidate(version.ref, f"run-{seed}", {"final_train_loss": 1.5})


def comparison(suite: str, champion: float, candidate: float, low: float, high: float) -> SuiteComparison:
    return SuiteComparison(
        suite=suite, dataset=f"{suite}@1", metric="exact_match", champion=champion, candidate=candidate,
        improvement=candidate - champion, low=low, high=high, p_value=0.01, n=40,
        candidate_run="cand-run", champion_run="champ-run",
    )  # fmt: skip


@dataclass
class FakeEvaluator:
    fresh: tuple[float, float, float, float] = (0.2, 0.7, 0.35, 0.65)
    original: tuple[float, float, float, float] = (0.9, 0.9, -0.04, 0.04)
    calls: int = 0

    def evaluate(self, champion: str, candidate: str, fresh_dataset: str) -> Evaluation:
        self.calls += 1
        return Evaluation(comparison("original", *self.original), comparison(fresh_dataset, *self.fresh))


@dataclass
class FakeRollout:
    home: Home
    promote: bool = True
    started: list[str] = field(default_factory=list)

    def start(self, deployment: str, candidate: str, policy: RolloutPolicy, *, reason: str) -> str:
        self.started.append(candidate)
        return f"rollout-{len(self.started)}"

    def wait(self, rollout_id: str) -> RolloutOutcome:
        candidate = self.started[int(rollout_id.split("-")[1]) - 1]
        if not self.promote:
            return RolloutOutcome(False, "rolled_back", "canary step 1: error rate 0.2 > 0.01", {"step": 1})
        registry = Registry.from_home(self.home)
        registry.set_alias("bot", "production", registry.get(candidate).version)
        return RolloutOutcome(True, "promoted", f"{candidate} promoted", {"steps": 1})
