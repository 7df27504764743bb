"""From a dataset row and a prediction to a scored ``ExampleOutcome``.

The runner calls ``example_from_record`` to get the prompt it must generate for (text or chat
messages), then ``score_example`` once the prediction is in. A metric that raises unexpectedly is
recorded as an errored result for that example (and so fails any gate over it), not a crashed run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from llmops.errors import InvalidInput
from llmops.evals.metric_base import ChatMessage, EvalExample, Measurements, Metric
from llmops.evals.results import ExampleOutcome, MetricResult
from llmops.evals.suite import FieldMapping


def example_from_record(
    record: Mapping[str, Any],
    fields: FieldMapping,
    index: int,
    measurements: Measurements | None = None,
) -> EvalExample:
    """The example metrics see for dataset row ``index``."""
    example_id = str(record[fields.id]) if fields.id is not None and fields.id in record else str(index)
    if fields.messages is not None:
        messages = _messages(record.get(fields.messages), fields.messages, index)
        prompt = "\n".join(f"{message.role}: {message.content}" for message in messages)
    else:
        messages = None
        prompt = _text(record.get(fields.input), fields.input, index)
    return EvalExample(
        example_id=example_id,
        prompt=prompt,
        record=record,
        messages=messages,
        measurements=measurements or Measurements(),
    )


def reference_of(record: Mapping[str, Any], fields: FieldMapping) -> str | None:
    """The row's reference as text (JSON for structured values), or ``None`` when it has none."""
    if fields.reference is None:
        return None
    value = record.get(fields.reference)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def score_example(
    metrics: Sequence[Metric], prediction: str, reference: str | None, example: EvalExample
) -> ExampleOutcome:
    """Every metric on one example."""
    scores: dict[str, MetricResult] = {}
    for metric in metrics:
        try:
            scores[metric.metric_id] = metric.score(prediction, reference, example)
        except Exception as exc:  # a metric bug must not kill the run; the gate fails closed instead
            scores[metric.metric_id] = MetricResult.failed(f"metric raised {type(exc).__name__}: {exc}")
    return ExampleOutcome(
        example_id=example.example_id,
        prompt=example.prompt,
        prediction=prediction,
        reference=reference,
        scores=scores,
    )


def _text(value: Any, field_name: str, index: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(
            f"row {index}: field {field_name!r} must be text, got {type(value).__name__}", param=field_name
        )
    return value


def _messages(value: Any, field_name: str, index: int) -> tuple[ChatMessage, ...]:
    fix = "expected a list of {role, content} objects"
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"row {index}: field {field_name!r}: {fix}", param=field_name)
    messages = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("role"), str):
            raise InvalidInput(f"row {index}: field {field_name!r}: {fix}", param=field_name)
        if not isinstance(item.get("content"), str):
            raise InvalidInput(f"row {index}: field {field_name!r}: {fix}", param=field_name)
        messages.append(ChatMessage(role=item["role"], content=item["content"]))
    return tuple(messages)
