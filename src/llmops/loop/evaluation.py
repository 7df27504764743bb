"""Champion against candidate on the original suite and on the cycle's fresh slice, and the loop's gate.

Both comparisons go through the evals package (``EvalRunner.compare``: stored runs reused by model
digest, paired bootstrap interval and McNemar/Wilcoxon test per metric). The fresh-slice suite is the
original suite pointed at the fresh dataset version (prompt → completion), without its own gates.
The gate passes when the candidate's improvement on the fresh slice has its whole interval above
``min_improvement`` (zero by default) and its improvement on the original suite has its lower bound at
or above ``-max_regression``; the verdict is stored on the candidate as a ``gates/loop-NAME`` tag, the
form the rollout controller's deploy-time check reads.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from llmops.errors import InvalidInput
from llmops.evals.results import Comparison, MetricComparison
from llmops.evals.runner import EvalRunner
from llmops.loop.config import Gate
from llmops.registry import Registry
from llmops.store.home import Home


@dataclass(frozen=True)
class SuiteComparison:
    """One metric of candidate vs champion on one suite; ``improvement`` is re-signed so higher is better."""

    suite: str
    dataset: str
    metric: str
    champion: float | None
    candidate: float | None
    improvement: float | None
    low: float | None
    high: float | None
    p_value: float | None
    n: int
    candidate_run: str
    champion_run: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Evaluation:
    original: SuiteComparison
    fresh: SuiteComparison

    def to_json(self) -> dict[str, Any]:
        return {"original": self.original.to_json(), "fresh": self.fresh.to_json()}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Evaluation:
        return Evaluation(SuiteComparison(**data["original"]), SuiteComparison(**data["fresh"]))


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    reasons: list[str]
    checks: list[dict[str, Any]] = field(default_factory=list)


class Evaluator(Protocol):
    def evaluate(self, champion: str, candidate: str, fresh_dataset: str) -> Evaluation: ...


def _suite_comparison(comparison: Comparison, metric: str, suite: str, dataset: str) -> SuiteComparison:
    found: MetricComparison | None = comparison.get(metric)
    if found is None or found.error is not None:
        why = found.error if found is not None else "not computed"
        raise InvalidInput(f"metric {metric!r} could not be compared on {suite}: {why}", param="gate.metric")
    sign = 1.0 if found.info.higher_is_better else -1.0
    low = high = None
    if found.interval is not None:
        low, high = sorted((sign * found.interval.low, sign * found.interval.high))
    return SuiteComparison(
        suite=suite,
        dataset=dataset,
        metric=metric,
        champion=found.baseline,
        candidate=found.candidate,
        improvement=None if found.difference is None else sign * found.difference,
        low=low,
        high=high,
        p_value=found.p_value,
        n=found.n_pairs,
        candidate_run="",
        champion_run="",
    )


class SuiteEvaluator:
    """Runs the comparisons with ``EvalRunner`` (its generator factory injectable for tests)."""

    def __init__(self, runner: EvalRunner, gate: Gate) -> None:
        self.runner = runner
        self.gate = gate

    @classmethod
    def from_home(cls, home: Home, gate: Gate) -> SuiteEvaluator:
        return cls(EvalRunner(home), gate)

    def _compare(self, suite_path: Path, champion: str, candidate: str) -> SuiteComparison:
        comparison, cand, base = self.runner.compare(suite_path, candidate, champion, limit=self.gate.limit)
        result = _suite_comparison(comparison, self.gate.metric, cand.suite.name, cand.dataset.ref)
        return SuiteComparison(
            **{**result.__dict__, "candidate_run": cand.run_id, "champion_run": base.run_id}
        )

    def evaluate(self, champion: str, candidate: str, fresh_dataset: str) -> Evaluation:
        original = self._compare(self.gate.suite, champion, candidate)
        raw = yaml.safe_load(self.gate.suite.read_text(encoding="utf-8"))
        fresh_suite = {
            **raw,
            "name": f"{raw['name']}-fresh",
            "dataset": fresh_dataset,
            "fields": {"input": "prompt", "reference": "completion"},
            "gates": [],
        }
        with tempfile.TemporaryDirectory(prefix="llmops-loop-suite-") as tmp:
            path = Path(tmp) / "fresh-suite.yaml"
            path.write_text(yaml.safe_dump(fresh_suite), encoding="utf-8")
            fresh = self._compare(path, champion, candidate)
        return Evaluation(original, fresh)


def decide(gate: Gate, evaluation: Evaluation) -> GateVerdict:
    """The loop's gate over an ``Evaluation`` (see the module docstring)."""
    fresh, original = evaluation.fresh, evaluation.original
    fresh_ok = fresh.low is not None and fresh.low > gate.min_improvement
    original_ok = original.low is not None and original.low >= -gate.max_regression
    checks = [
        {
            "name": f"{fresh.metric} improves on the fresh slice",
            "passed": fresh_ok,
            "reason": f"improvement {_num(fresh.improvement)}, interval [{_num(fresh.low)}, "
            f"{_num(fresh.high)}] {'>' if fresh_ok else 'not >'} {gate.min_improvement:g}",
        },
        {
            "name": f"{original.metric} does not regress on {original.suite}",
            "passed": original_ok,
            "reason": f"improvement {_num(original.improvement)}, lower bound {_num(original.low)}"
            f" {'>=' if original_ok else '<'} -{gate.max_regression:g}",
        },
    ]
    reasons = [f"{c['name']}: {c['reason']}" for c in checks if not c["passed"]]
    return GateVerdict(fresh_ok and original_ok, reasons, checks)


def record_verdict(home: Home, loop_name: str, candidate: str, verdict: GateVerdict, cycle_id: str) -> None:
    """Store the verdict on the candidate, where the rollout's deploy-time gate check reads it."""
    Registry.from_home(home).merge_tags(
        candidate,
        {f"gates/loop-{loop_name}": {"passed": verdict.passed, "gates": verdict.checks, "cycle": cycle_id}},
        reason=f"loop cycle {cycle_id}",
    )


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"
