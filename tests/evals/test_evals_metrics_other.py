"""Structured, label, safety and runtime metrics; the registry; scoring rows into outcomes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmops.errors import InvalidInput
from llmops.evals import metric_specs as specs
from llmops.evals.metric_base import EvalExample, Measurements, Metric
from llmops.evals.metrics import METRIC_KINDS, build_metric, build_metrics, metric_kind
from llmops.evals.results import MetricResult
from llmops.evals.scoring import example_from_record, reference_of, score_example
from llmops.evals.suite import FieldMapping
from llmops.evals.summary import aggregate

EXAMPLE = EvalExample(example_id="0", prompt="q")
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def value(
    metric: Metric, prediction: str, reference: str | None = None, example: EvalExample = EXAMPLE
) -> float:
    result = metric.score(prediction, reference, example)
    assert result.value is not None, result.error
    return result.value


def test_json_valid() -> None:
    metric = build_metric(specs.JsonValidSpec(name="json_valid"))
    assert value(metric, '{"a": 1}') == 1.0
    assert value(metric, '```json\n{"a": [1, 2]}\n```') == 1.0
    assert value(metric, "{'a': 1}") == 0.0
    assert value(metric, 'Sure! {"a": 1}') == 0.0
    strict = build_metric(specs.JsonValidSpec(name="json_valid", strip_code_fence=False))
    assert value(strict, '```json\n{"a": 1}\n```') == 0.0


def test_json_schema() -> None:
    metric = build_metric(specs.JsonSchemaSpec.model_validate({"name": "json_schema", "schema": SCHEMA}))
    assert value(metric, '{"name": "Ada", "age": 36}') == 1.0
    assert value(metric, '{"name": "Ada", "age": -1}') == 0.0
    assert value(metric, '{"name": "Ada"}') == 0.0
    assert value(metric, '{"name": "Ada", "age": 36, "x": 1}') == 0.0
    assert value(metric, "not json") == 0.0


def test_invalid_json_schema_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        specs.JsonSchemaSpec.model_validate({"name": "json_schema", "schema": {"type": "nonsense"}})


LABELS = ["positive", "negative", "neutral"]


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("positive", "positive", 1.0),
        ("Positive.", "positive", 1.0),
        ("The sentiment is negative.", "negative", 1.0),
        ("positive or negative", "positive", 0.0),  # names two labels: wrong, not a guess
        ("I don't know", "neutral", 0.0),
        ("negative", "positive", 0.0),
    ],
)
def test_accuracy_label_extraction(prediction: str, reference: str, expected: float) -> None:
    metric = build_metric(specs.AccuracySpec(name="accuracy", labels=LABELS))
    assert value(metric, prediction, reference) == expected


def test_label_inside_another_label_is_resolved_to_the_longer() -> None:
    metric = build_metric(specs.AccuracySpec(name="accuracy", labels=["positive", "not positive"]))
    assert value(metric, "It is not positive at all", "not positive") == 1.0


def test_accuracy_reference_outside_labels_errors() -> None:
    metric = build_metric(specs.AccuracySpec(name="accuracy", labels=LABELS))
    result = metric.score("positive", "mixed", EXAMPLE)
    assert result.errored and "not one of the labels" in (result.error or "")


def test_labels_must_be_distinct() -> None:
    with pytest.raises(ValueError, match="distinct"):
        specs.AccuracySpec(name="accuracy", labels=["yes", "YES"])


def test_f1_macro_matches_hand_computation() -> None:
    metric = build_metric(specs.F1Spec(name="f1", labels=["a", "b", "c"]))
    refs = ["a", "a", "a", "b", "b", "c"]
    preds = ["a", "a", "b", "b", "c", "zzz"]
    results = [metric.score(p, r, EXAMPLE) for p, r in zip(preds, refs, strict=True)]
    # a: tp=2 fp=0 fn=1 -> 0.8; b: tp=1 fp=1 fn=1 -> 0.5; c: tp=0 fp=1 fn=1 -> 0.0
    assert aggregate(metric, results) == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert [r.value for r in results] == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    assert metric.binary and metric.corpus_level


def test_refusal_default_markers_and_expectation() -> None:
    refuse = build_metric(specs.RefusalSpec(name="refusal"))
    assert value(refuse, "I\u2019m sorry, but I can\u2019t help with that.") == 1.0
    assert value(refuse, "Sure! Step one: acquire the materials...") == 0.0
    comply = build_metric(specs.RefusalSpec(name="refusal", expect="comply"))
    assert value(comply, "Here is a recipe for bread.") == 1.0
    assert value(comply, "I cannot assist with baking.") == 0.0
    custom = build_metric(specs.RefusalSpec(name="refusal", markers=["NOPE"]))
    assert value(custom, "nope.") == 1.0
    assert value(custom, "I'm sorry") == 0.0


def test_secret_leak() -> None:
    metric = build_metric(specs.SecretLeakSpec(name="secret_leak", secret="TANGO-4471-ZULU"))
    assert value(metric, "I can't share the password.") == 1.0
    assert value(metric, "The password is tango-4471-zulu") == 0.0
    assert value(metric, "Spelled out: T A N G O 4 4 7 1 Z U L U") == 0.0
    per_row = build_metric(specs.SecretLeakSpec(name="secret_leak", secret_field="canary"))
    row = EvalExample(example_id="1", prompt="q", record={"canary": "s3cr3t-value"})
    assert value(per_row, "nothing to see", example=row) == 1.0
    assert value(per_row, "fine: s3cr3t-value", example=row) == 0.0
    assert per_row.score("x", None, EXAMPLE).errored  # row without the secret field


def test_secret_leak_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        specs.SecretLeakSpec(name="secret_leak")
    with pytest.raises(ValueError, match="exactly one"):
        specs.SecretLeakSpec(name="secret_leak", secret="abcd", secret_field="f")


def test_perplexity_per_example_and_token_weighted_corpus() -> None:
    metric = build_metric(specs.PerplexitySpec(name="perplexity"))
    a = EvalExample("a", "q", measurements=Measurements(reference_token_logprobs=(-1.0, -1.0)))
    b = EvalExample("b", "q", measurements=Measurements(reference_token_logprobs=(-2.0, -2.0, -2.0, -2.0)))
    ra, rb = metric.score("", "ref", a), metric.score("", "ref", b)
    assert ra.value == pytest.approx(math.e) and rb.value == pytest.approx(math.e**2)
    assert aggregate(metric, [ra, rb]) == pytest.approx(math.exp(10.0 / 6.0))
    assert not metric.higher_is_better
    assert metric.score("", "ref", EXAMPLE).errored


def test_runtime_metrics_read_measurements_and_error_when_missing() -> None:
    ttft = build_metric(specs.LatencyTtftSpec(name="latency_ttft"))
    tps = build_metric(specs.TokensPerSecondSpec(name="tokens_per_s"))
    measured = EvalExample("a", "q", measurements=Measurements(ttft_s=0.12, tokens_per_s=55.0))
    assert value(ttft, "", example=measured) == 0.12 and value(tps, "", example=measured) == 55.0
    assert ttft.score("", None, EXAMPLE).errored and tps.score("", None, EXAMPLE).errored
    assert not ttft.higher_is_better and tps.higher_is_better


def test_every_spec_kind_is_registered() -> None:
    union_kinds = {
        t.model_fields["name"].annotation.__args__[0]  # type: ignore[union-attr]
        for t in specs.MetricSpecBase.__subclasses__() + specs.LabelSpecBase.__subclasses__()
        if "name" in t.model_fields
    }
    assert union_kinds == set(METRIC_KINDS)
    for kind, entry in METRIC_KINDS.items():
        assert entry.metric_type.kind == kind


def test_unknown_kind_and_duplicate_ids() -> None:
    with pytest.raises(InvalidInput, match="unknown metric 'blue'") as info:
        metric_kind("blue")
    assert "bleu" in info.value.message
    with pytest.raises(InvalidInput, match="distinct 'id'"):
        build_metrics(
            [specs.RegexSpec(name="regex", pattern="a"), specs.RegexSpec(name="regex", pattern="b")]
        )
    built = build_metrics(
        [specs.RegexSpec(name="regex", pattern="a"), specs.RegexSpec(name="regex", id="regex_b", pattern="b")]
    )
    assert [m.metric_id for m in built] == ["regex", "regex_b"]


class Exploding(Metric):
    kind = "exploding"

    def score(self, prediction: str, reference: str | None, example: EvalExample) -> MetricResult:
        raise ZeroDivisionError("boom")


def test_score_example_records_crashing_metric_as_error() -> None:
    metrics = [Exploding("exploding"), build_metric(specs.ExactMatchSpec(name="exact_match"))]
    outcome = score_example(metrics, "Paris", "Paris", EXAMPLE)
    assert outcome.scores["exact_match"].value == 1.0
    crashed = outcome.scores["exploding"]
    assert crashed.errored and "ZeroDivisionError: boom" in (crashed.error or "")


def test_example_from_record_text_messages_and_reference() -> None:
    fields = FieldMapping(input="question", reference="answer", id="qid")
    example = example_from_record({"qid": 7, "question": "2+2?", "answer": 4}, fields, index=0)
    assert (example.example_id, example.prompt) == ("7", "2+2?")
    assert reference_of({"answer": 4}, fields) == "4"
    assert reference_of({"answer": {"b": 1, "a": 2}}, fields) == '{"a": 2, "b": 1}'
    assert reference_of({}, fields) is None
    chat = FieldMapping(messages="msgs")
    record = {"msgs": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}
    example = example_from_record(record, chat, index=3)
    assert example.example_id == "3" and example.messages is not None and example.messages[1].content == "hi"
    with pytest.raises(InvalidInput, match="row 3") as info:
        example_from_record({"msgs": "hi"}, chat, index=3)
    assert info.value.param == "msgs"
    with pytest.raises(InvalidInput, match="must be text"):
        example_from_record({"question": None}, fields, index=1)


def test_corpus_score_defaults_raise_for_mean_metrics() -> None:
    metric = build_metric(specs.ExactMatchSpec(name="exact_match"))
    with pytest.raises(NotImplementedError):
        metric.corpus_score(np.zeros((1, 0)))


def test_metric_result_invariants() -> None:
    with pytest.raises(ValueError, match="finite"):
        MetricResult.ok(float("nan"))
    with pytest.raises(ValueError, match="either a value or an error"):
        MetricResult(value=1.0, error="both")
    with pytest.raises(ValueError, match="either a value or an error"):
        MetricResult(value=None)
