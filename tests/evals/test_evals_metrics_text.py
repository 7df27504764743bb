"""Text metrics on hand-made examples, and ROUGE/BLEU/chrF against the reference libraries."""

from __future__ import annotations

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from llmops.evals.metric_base import EvalExample
from llmops.evals.metric_specs import (
    BleuSpec,
    ChrfSpec,
    ContainsSpec,
    ExactMatchSpec,
    NumericSpec,
    RegexSpec,
    RougeSpec,
)
from llmops.evals.metrics import build_metric
from llmops.evals.metrics_text import extract_numbers
from llmops.evals.results import MetricResult
from llmops.evals.summary import aggregate

EXAMPLE = EvalExample(example_id="0", prompt="q")
HYPS = ["the cat sat on the mat", "a quick brown fox jumps", "hello there general kenobi", "nothing alike"]
REFS = [
    "the cat sat on a mat",
    "the quick brown fox jumped over",
    "hello there",
    "completely different words",
]


def score(spec: object, prediction: str, reference: str | None) -> MetricResult:
    return build_metric(spec).score(prediction, reference, EXAMPLE)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [("Paris", "paris", 1.0), ("  Paris \n", "Paris", 1.0), ("Paris.", "Paris", 0.0), ("Lyon", "Paris", 0.0)],
)
def test_exact_match_normalises_case_and_whitespace(prediction: str, reference: str, expected: float) -> None:
    assert score(ExactMatchSpec(name="exact_match"), prediction, reference).value == expected


def test_exact_match_case_sensitive_option() -> None:
    assert score(ExactMatchSpec(name="exact_match", case_sensitive=True), "paris", "Paris").value == 0.0


def test_missing_reference_is_an_error_not_a_fail() -> None:
    result = score(ExactMatchSpec(name="exact_match"), "Paris", None)
    assert result.value is None and result.error is not None and "reference" in result.error


def test_contains() -> None:
    spec = ContainsSpec(name="contains")
    assert score(spec, "The capital is PARIS, of course", "Paris").value == 1.0
    assert score(spec, "The capital is Lyon", "Paris").value == 0.0
    assert score(spec, "anything", "  ").errored


def test_regex_search_and_full_match() -> None:
    assert score(RegexSpec(name="regex", pattern=r"\[\d+\]"), "as shown in [3].", None).value == 1.0
    assert score(RegexSpec(name="regex", pattern=r"\[\d+\]"), "as shown.", None).value == 0.0
    full = RegexSpec(name="regex", pattern=r"yes|no", full_match=True, ignore_case=True)
    assert score(full, " YES ", None).value == 1.0
    assert score(full, "yes, definitely", None).value == 0.0


def test_extract_numbers() -> None:
    assert extract_numbers("from 1,200 to -3.5e2 and .5") == [1200.0, -350.0, 0.5]


@pytest.mark.parametrize(
    ("spec_kwargs", "prediction", "reference", "expected"),
    [
        ({}, "The answer is 42.", "42", 1.0),
        ({}, "First 7, then the answer is 42", "42", 1.0),
        ({"extract": "first"}, "First 7, then the answer is 42", "42", 0.0),
        ({}, "It is 1,000", "1000", 1.0),
        ({}, "0.30000000000000004", "0.3", 1.0),
        ({"tolerance": 0.5}, "3.4", "3", 1.0),
        ({"tolerance": 0.1}, "3.4", "3", 0.0),
        ({"relative_tolerance": 0.01}, "1005", "1000", 1.0),
        ({}, "no number here", "5", 0.0),
    ],
)
def test_numeric(spec_kwargs: dict[str, object], prediction: str, reference: str, expected: float) -> None:
    spec = NumericSpec.model_validate({"name": "numeric", **spec_kwargs})
    assert score(spec, prediction, reference).value == expected


def test_numeric_reference_not_a_number_errors() -> None:
    result = score(NumericSpec(name="numeric"), "42", "forty-two")
    assert result.errored and "not a number" in (result.error or "")


def test_rouge_matches_rouge_score() -> None:
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    metric = build_metric(RougeSpec(name="rouge"))
    for hyp, ref in zip(HYPS, REFS, strict=True):
        expected = scorer.score(ref, hyp)["rougeL"].fmeasure
        assert metric.score(hyp, ref, EXAMPLE).value == pytest.approx(expected)
    rouge2 = build_metric(RougeSpec(name="rouge", variant="rouge2", use_stemmer=True))
    expected2 = (
        rouge_scorer.RougeScorer(["rouge2"], use_stemmer=True).score(REFS[1], HYPS[1])["rouge2"].fmeasure
    )
    assert rouge2.score(HYPS[1], REFS[1], EXAMPLE).value == pytest.approx(expected2)


def test_rouge_run_score_is_mean() -> None:
    metric = build_metric(RougeSpec(name="rouge"))
    results = [metric.score(h, r, EXAMPLE) for h, r in zip(HYPS, REFS, strict=True)]
    assert aggregate(metric, results) == pytest.approx(sum(r.value or 0.0 for r in results) / len(results))


def test_bleu_sentence_and_corpus_match_sacrebleu() -> None:
    metric = build_metric(BleuSpec(name="bleu"))
    results = [metric.score(h, r, EXAMPLE) for h, r in zip(HYPS, REFS, strict=True)]
    for result, hyp, ref in zip(results, HYPS, REFS, strict=True):
        assert result.value == pytest.approx(sacrebleu.sentence_bleu(hyp, [ref]).score)
    corpus = sacrebleu.corpus_bleu(HYPS, [REFS]).score
    assert aggregate(metric, results) == pytest.approx(corpus)
    # The corpus score is not the mean of sentence scores: the aggregation really is corpus-level.
    assert corpus != pytest.approx(sum(r.value or 0.0 for r in results) / len(results))


def test_bleu_lowercase_option() -> None:
    metric = build_metric(BleuSpec(name="bleu", lowercase=True))
    value = metric.score("THE CAT SAT ON THE MAT", "the cat sat on the mat", EXAMPLE).value
    assert value == pytest.approx(100.0)


def test_chrf_sentence_and_corpus_match_sacrebleu() -> None:
    metric = build_metric(ChrfSpec(name="chrf"))
    results = [metric.score(h, r, EXAMPLE) for h, r in zip(HYPS, REFS, strict=True)]
    for result, hyp, ref in zip(results, HYPS, REFS, strict=True):
        assert result.value == pytest.approx(sacrebleu.sentence_chrf(hyp, [ref]).score)
    assert aggregate(metric, results) == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)


def test_chrf_plus_plus_matches_sacrebleu() -> None:
    metric = build_metric(ChrfSpec(name="chrf", word_order=2))
    results = [metric.score(h, r, EXAMPLE) for h, r in zip(HYPS, REFS, strict=True)]
    assert aggregate(metric, results) == pytest.approx(
        sacrebleu.corpus_chrf(HYPS, [REFS], word_order=2).score
    )


def test_aggregate_over_empty_set_is_invalid_input() -> None:
    from llmops.errors import InvalidInput

    metric = build_metric(BleuSpec(name="bleu"))
    with pytest.raises(InvalidInput, match="empty"):
        aggregate(metric, [])
    with pytest.raises(InvalidInput, match="empty"):
        aggregate(build_metric(RougeSpec(name="rouge")), [MetricResult.failed("judge down")])
