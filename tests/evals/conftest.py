"""Fixtures for the evals tests: building runs from plain value lists."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from llmops.evals.results import ExampleOutcome, MetricResult, RunResults

RunFactory = Callable[..., RunResults]


def build_run(
    model: str,
    values: dict[str, Sequence[float | None]],
    *,
    suite: str = "suite",
    ids: Sequence[str] | None = None,
    stats: dict[str, Sequence[tuple[float, ...]]] | None = None,
) -> RunResults:
    """A run whose metric ``m`` has ``values[m][i]`` on example ``i`` (``None`` = errored)."""
    n = len(next(iter(values.values())))
    outcomes = []
    for i in range(n):
        scores: dict[str, MetricResult] = {}
        for metric_id, column in values.items():
            value = column[i]
            if value is None:
                scores[metric_id] = MetricResult.failed("judge endpoint unreachable")
            else:
                row_stats = stats[metric_id][i] if stats and metric_id in stats else ()
                scores[metric_id] = MetricResult.ok(value, stats=row_stats)
        example_id = ids[i] if ids is not None else f"ex{i}"
        outcomes.append(
            ExampleOutcome(
                example_id=example_id,
                prompt=f"prompt {i}",
                prediction="x" * (i % 17),
                reference="ref",
                scores=scores,
            )
        )
    return RunResults(suite=suite, model=model, outcomes=tuple(outcomes))


@pytest.fixture
def make_run() -> RunFactory:
    return build_run
