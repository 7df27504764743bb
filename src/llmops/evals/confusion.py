"""Confusion matrices of the label metrics (``accuracy``, ``f1``), from their stored statistics.

Each scored example of a label metric keeps ``(predicted label index, reference label index)``;
the matrix counts them. Rows are references, columns predictions; a prediction that names no label
(or several) falls in the last column, ``(none)``. Label names are the references' own texts.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmops.evals.metrics_structured import NO_LABEL
from llmops.evals.results import RunResults

LABEL_KINDS = frozenset({"accuracy", "f1"})
NONE_COLUMN = "(none)"


@dataclass(frozen=True)
class ConfusionMatrix:
    labels: tuple[str, ...]  # row and column names; the columns add NONE_COLUMN
    counts: tuple[tuple[int, ...], ...]  # [reference][prediction], len(labels) + 1 columns

    @property
    def total(self) -> int:
        return sum(sum(row) for row in self.counts)


def confusion_matrix(results: RunResults, metric_id: str) -> ConfusionMatrix | None:
    """The matrix of ``metric_id`` over ``results``, or None when it kept no label pairs."""
    pairs: list[tuple[int, int]] = []
    names: dict[int, str] = {}
    for outcome in results.outcomes:
        result = outcome.scores.get(metric_id)
        if result is None or result.value is None or len(result.stats) != 2:
            continue
        predicted, expected = int(result.stats[0]), int(result.stats[1])
        pairs.append((predicted, expected))
        names.setdefault(expected, (outcome.reference or "").strip())
        if predicted != NO_LABEL:
            names.setdefault(predicted, outcome.prediction.strip())
    if not pairs:
        return None
    order = sorted(names)
    column = {index: i for i, index in enumerate(order)}
    counts = [[0] * (len(order) + 1) for _ in order]
    for predicted, expected in pairs:
        counts[column[expected]][column.get(predicted, len(order))] += 1
    return ConfusionMatrix(tuple(names[i] for i in order), tuple(tuple(row) for row in counts))
