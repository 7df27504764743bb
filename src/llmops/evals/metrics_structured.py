"""Structured-output metrics: valid JSON, JSON Schema conformance, and labels (accuracy, macro F1).

Schema conformance is checked with jsonschema. Label metrics map a free-text prediction onto the
suite's closed label set (an exact match first, then a single label named as a whole word);
a prediction naming no label, or several, is simply wrong. Macro F1 is corpus-level: each example
keeps ``(predicted label index, reference label index)`` and the run score is recomputed from them.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import numpy as np
from numpy.typing import NDArray

from llmops.evals.metric_base import EvalExample, Metric, missing_reference
from llmops.evals.metric_specs import AccuracySpec, F1Spec, JsonSchemaSpec, JsonValidSpec, LabelSpecBase
from llmops.evals.results import MetricResult

_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n(?P<body>.*?)\n?```$", re.DOTALL)
_LABEL_TRIM = " \t\r\n.!?:;\"'`*()[]"
NO_LABEL = -1


def parse_json_output(prediction: str, *, strip_code_fence: bool) -> tuple[bool, Any]:
    """``(True, value)`` when the prediction is JSON (optionally inside a fenced block)."""
    text = prediction.strip()
    if strip_code_fence:
        fenced = _FENCE.match(text)
        if fenced:
            text = fenced.group("body").strip()
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


class JsonValid(Metric):
    kind = "json_valid"
    binary = True
    needs_reference = False

    def __init__(self, spec: JsonValidSpec) -> None:
        super().__init__(spec.metric_id)
        self.strip_code_fence = spec.strip_code_fence

    def score(self, prediction: str, reference: str | None, example: EvalExample) -> MetricResult:
        parsed, _ = parse_json_output(prediction, strip_code_fence=self.strip_code_fence)
        return MetricResult.ok(float(parsed))


class JsonSchema(Metric):
    kind = "json_schema"
    binary = True
    needs_reference = False

    def __init__(self, spec: JsonSchemaSpec) -> None:
        super().__init__(spec.metric_id)
        self.strip_code_fence = spec.strip_code_fence
        self.validator = jsonschema.validators.validator_for(spec.json_schema)(spec.json_schema)

    def score(self, prediction: str, reference: str | None, example: EvalExample) -> MetricResult:
        parsed, value = parse_json_output(prediction, strip_code_fence=self.strip_code_fence)
        return MetricResult.ok(float(parsed and self.validator.is_valid(value)))


class LabelMatcher:
    """Maps free text onto an index into a closed label set."""

    def __init__(self, labels: list[str], *, case_sensitive: bool) -> None:
        self.labels = labels
        self.case_sensitive = case_sensitive
        self._normalised = [self.normalise(label) for label in labels]

    def normalise(self, text: str) -> str:
        text = re.sub(r"\s+", " ", text).strip(_LABEL_TRIM)
        return text if self.case_sensitive else text.casefold()

    def exact_index(self, text: str) -> int:
        """The label ``text`` is (after trimming), or ``NO_LABEL``."""
        norm = self.normalise(text)
        return self._normalised.index(norm) if norm in self._normalised else NO_LABEL

    def index_of(self, text: str) -> int:
        """The label ``text`` names, or ``NO_LABEL`` when it names none or several."""
        exact = self.exact_index(text)
        if exact != NO_LABEL:
            return exact
        norm = self.normalise(text)
        found = [
            i
            for i, label in enumerate(self._normalised)
            if re.search(rf"(?<!\w){re.escape(label)}(?!\w)", norm)
        ]
        # "not positive" also contains "positive": keep only labels not inside another found label.
        outer = [
            i for i in found if not any(i != j and self._normalised[i] in self._normalised[j] for j in found)
        ]
        return outer[0] if len(outer) == 1 else NO_LABEL


class _LabelMetric(Metric):
    binary = True

    def __init__(self, spec: LabelSpecBase) -> None:
        super().__init__(spec.metric_id)
        self.matcher = LabelMatcher(spec.labels, case_sensitive=spec.case_sensitive)

    def score(self, prediction: str, reference: str | None, example: EvalExample) -> MetricResult:
        if reference is None:
            return missing_reference(self.metric_id)
        expected = self.matcher.exact_index(reference)
        if expected == NO_LABEL:
            return MetricResult.failed(
                f"reference {reference[:40]!r} is not one of the labels {self.matcher.labels}"
            )
        predicted = self.matcher.index_of(prediction)
        return MetricResult.ok(float(predicted == expected), stats=(float(predicted), float(expected)))


class Accuracy(_LabelMetric):
    kind = "accuracy"

    def __init__(self, spec: AccuracySpec) -> None:
        super().__init__(spec)


class F1(_LabelMetric):
    """Macro F1 over the labels present in the references or predictions (as scikit-learn does)."""

    kind = "f1"
    corpus_level = True

    def __init__(self, spec: F1Spec) -> None:
        super().__init__(spec)

    def corpus_score(self, stats: NDArray[np.float64]) -> float:
        predicted, expected = stats[:, 0], stats[:, 1]
        present = set(expected.tolist()) | (set(predicted.tolist()) - {float(NO_LABEL)})
        if not present:
            return 0.0
        return float(np.mean([_f1_of_label(predicted, expected, label) for label in sorted(present)]))


def _f1_of_label(predicted: NDArray[np.float64], expected: NDArray[np.float64], label: float) -> float:
    true_pos = float(np.sum((predicted == label) & (expected == label)))
    denominator = float(np.sum(predicted == label) + np.sum(expected == label))
    return 2.0 * true_pos / denominator if denominator else 0.0
