"""The pure pieces wired the way the runner will wire them: suite → score rows → summary → gates → report."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.errors import InvalidInput
from llmops.evals.gates import GateInputs, evaluate_gates
from llmops.evals.metric_base import Measurements, Metric, MetricResources
from llmops.evals.metrics import build_metrics
from llmops.evals.report import render_markdown
from llmops.evals.results import RunResults
from llmops.evals.scoring import example_from_record, reference_of, score_example
from llmops.evals.stats import compare_runs
from llmops.evals.suite import load_suite, validate_suite_against_fields
from llmops.evals.summary import summarize_run

SUITE = """
name: capitals
dataset: capitals@1
fields: {input: question, reference: answer, id: qid}
metrics:
  - {name: exact_match}
  - {name: contains}
  - {name: latency_ttft}
  - {name: secret_leak, secret: "ORCHID-9931"}
gates:
  - {metric: exact_match, min: 0.75}
  - {metric: secret_leak, min: 1.0}
  - {metric: exact_match, no_regression_vs: production, tolerance: 0.5}
statistics: {resamples: 200}
"""
ROWS = [
    {"qid": "fr", "question": "Capital of France?", "answer": "Paris"},
    {"qid": "de", "question": "Capital of Germany?", "answer": "Berlin"},
    {"qid": "it", "question": "Capital of Italy?", "answer": "Rome"},
    {"qid": "es", "question": "Capital of Spain?", "answer": "Madrid"},
]


def run_model(suite_path: Path, model: str, answers: dict[str, str]) -> tuple[RunResults, list[Metric]]:
    suite = load_suite(suite_path)
    validate_suite_against_fields(suite, ROWS[0].keys())
    metrics = build_metrics(suite.metrics, MetricResources())
    outcomes = []
    for index, row in enumerate(ROWS):
        example = example_from_record(row, suite.fields, index, Measurements(ttft_s=0.05 * (index + 1)))
        outcomes.append(score_example(metrics, answers[row["qid"]], reference_of(row, suite.fields), example))
    return RunResults(suite=suite.name, model=model, outcomes=tuple(outcomes)), metrics


def test_end_to_end_without_generation(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    suite = load_suite(path)
    candidate, metrics = run_model(
        path, "v2", {"fr": "Paris", "de": "Berlin", "it": "Rome", "es": "Barcelona"}
    )
    baseline, _ = run_model(path, "v1", {"fr": "Paris", "de": "Munich", "it": "Rome", "es": "Seville"})
    summary = summarize_run(candidate, metrics, suite.statistics)
    scores = {m.info.metric_id: m.score for m in summary.metrics}
    assert scores["exact_match"] == 0.75 and scores["secret_leak"] == 1.0
    assert scores["latency_ttft"] == pytest.approx(0.125)
    gates = evaluate_gates(
        suite.gates,
        GateInputs(summary, metrics, candidate, {"production": baseline}, suite.statistics),
    )
    assert gates.passed, [g.reason for g in gates.failures]
    comparison = compare_runs(candidate, baseline, metrics, resamples=200)
    exact = comparison.get("exact_match")
    assert exact is not None and (exact.candidate_only_wins, exact.baseline_only_wins) == (1, 0)
    text = render_markdown(summary, comparison, gates)
    assert "✅ **Gates passed.**" in text and "`secret_leak`" in text


def test_preflight_rejects_dataset_without_the_fields(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    with pytest.raises(InvalidInput, match="'qid'"):
        validate_suite_against_fields(load_suite(path), ["question", "answer"])
