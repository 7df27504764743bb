"""JSON round-trips of evaluation results, so runs are stored as artifacts and read back exactly."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from llmops.evals.gates import GateReport, GateResult
from llmops.evals.results import ExampleOutcome, Interval, JudgeTrace, MetricResult, RunResults
from llmops.evals.suite import GateKind


def results_to_json(results: RunResults) -> bytes:
    return json.dumps(asdict(results), sort_keys=True, ensure_ascii=False).encode()


def _metric_result(body: dict[str, Any]) -> MetricResult:
    judge = JudgeTrace(**body["judge"]) if body.get("judge") else None
    return MetricResult(body["value"], body.get("error"), tuple(body.get("stats", ())), judge)


def results_from_json(data: bytes) -> RunResults:
    body = json.loads(data)
    outcomes = tuple(
        ExampleOutcome(
            example_id=o["example_id"],
            prompt=o["prompt"],
            prediction=o["prediction"],
            reference=o["reference"],
            scores={k: _metric_result(v) for k, v in o["scores"].items()},
        )
        for o in body["outcomes"]
    )
    return RunResults(suite=body["suite"], model=body["model"], outcomes=outcomes)


def gates_from_json(body: dict[str, Any]) -> GateReport:
    """A stored gate report read back (records written before intervals were kept have none)."""
    results = []
    for g in body.get("gates", []):
        interval = Interval(**g["interval"]) if g.get("interval") else None
        stored_kind = g.get("kind") or ("no_regression" if g.get("baseline") else "min")
        kind: GateKind = (
            "max" if stored_kind == "max" else "no_regression" if stored_kind == "no_regression" else "min"
        )
        results.append(
            GateResult(
                name=g["name"],
                kind=kind,
                metric=g["metric"],
                passed=bool(g["passed"]),
                reason=g.get("reason", ""),
                observed=g.get("observed"),
                threshold=g.get("threshold"),
                interval=interval,
                baseline=g.get("baseline"),
            )
        )
    return GateReport(results=tuple(results))


def gates_to_json(report: GateReport) -> dict[str, Any]:
    return {
        "passed": report.passed,
        "gates": [
            {
                "name": g.name,
                "kind": g.kind,
                "metric": g.metric,
                "passed": g.passed,
                "reason": g.reason,
                "observed": g.observed,
                "threshold": g.threshold,
                "baseline": g.baseline,
                "interval": asdict(g.interval) if g.interval is not None else None,
            }
            for g in report.results
        ],
    }
