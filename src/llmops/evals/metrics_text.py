"""Text metrics: exact match, containment, regex, numeric answers, ROUGE, BLEU and chrF.

ROUGE comes from rouge-score; BLEU and chrF from sacrebleu. For BLEU and chrF each example keeps
sacrebleu's segment statistics so the run score is the true corpus score (not a mean of sentence
scores) and the bootstrap can resample it cheaply; this uses the same statistics methods that
sacrebleu's own significance tests use.
"""

from __future__ import annotations

import math
import re
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

from llmops.evals.metric_base import EvalExample, Metric, missing_reference
from llmops.evals.metric_specs import (
    BleuSpec,
    ChrfSpec,
    ContainsSpec,
    ExactMatchSpec,
    NumericSpec,
    RegexSpec,
    RougeSpec,
)
from llmops.evals.results import MetricResult

_WHITESPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


def _normalise(text: str, *, case_sensitive: bool, strip: bool) -> str:
    if strip:
        text = _WHITESPACE.sub(" ", text).strip()
    return text if case_sensitive else text.casefold()


def parse_number(text: str) -> float | None:
    """A number written as text (thousands commas allowed), or ``None``."""
    try:
        value = float(text.strip().replace(",", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def extract_numbers(text: str) -> list[float]:
    """Every number in ``text`` in order of appearance."""
    numbers = (parse_number(match) for match in _NUMBER.findall(text))
    return [number for number in numbers if number is not None]


class ExactMatch(Metric):
    kind = "exact_match"
    binary = True

    def __init__(self, spec: ExactMatchSpec) -> None:
        super().__init__(spec.metric_id)
        self.spec = spec

    def score(self, prediction: str, reference: str | None, example: EvalExample) -> MetricResult:
        if reference is None:
            return missing_reference(self.metric_id)
        opts = {"case_sensitive": self.spec.case_sensitive, "strip": self.spec.strip}
        return MetricResult.ok(float(_normalise(prediction, **opts) == _normalise(reference, **opts)))


class Contains(Metric):
    kind = "contains"
    binary = True

    def __init__(self, spec: ContainsSpec) -> None:
        super().__init__(spec.metric_id)
        self.spec = spec

    def score(self, prediction: str, reference: str | None, example: EvalExample) -> MetricResult:
        if reference is None:
            return missing_reference(self.metric_id)
        pred = _normalise(prediction, case_sensitive=self.spec.case_sensitive, strip=True)
        ref = _normalise(reference, case_sensitive=self.spec.case_sensitive, strip=True)
        if not ref:
            return MetricResult.failed("reference is empty; 'contains' would pass on anything")
        return MetricResult.ok(float(ref in pred))


class Regex(Metric):
    kind = "regex"
    binary = True
    needs_reference = False

    def __init__(self, spec: RegexSpec) -> None:
        super().__init__(spec.metric_id)
        self.pattern = re.compile(spec.pattern, re.IGNORECASE if spec.ignore_case else 0)
        self.full_match = spec.full_match

    def score(self, prediction: str, reference: str | None, example: EvalExample) -> MetricResult:
        if self.full_match:
            return MetricResult.ok(float(self.pattern.fullmatch(prediction.strip()) is not None))
        return MetricResult.ok(float(self.pattern.search(prediction) is not None))


class Numeric(Metric):
    kind = "numeric"
    binary = True

    def __init__(self, spec: NumericSpec) -> None:
        super().__init__(spec.metric_id)
        self.spec = spec

    def score(self, prediction: str, reference: str | None, example: EvalExample) -> MetricResult:
        if reference is None:
            return missing_reference(self.metric_id)
        expected = parse_number(reference)
        if expected is None:
            return MetricResult.failed(f"reference {reference[:40]!r} is not a number")
        found = extract_numbers(prediction)
        if not found:
            return MetricResult.ok(0.0)
        answer = found[-1] if self.spec.extract == "last" else found[0]
        allowed = max(self.spec.tolerance, self.spec.relative_tolerance * abs(expected))
        # A hair of slack so that 0.1 + 0.2 style float noise does not fail an exact answer.
        return MetricResult.ok(float(abs(answer - expected) <= allowed + 1e-9 * max(1.0, abs(expected))))


class Rouge(Metric):
    kind = "rouge"

    def __init__(self, spec: RougeSpec) -> None:
        super().__init__(spec.metric_id)
        self.variant = spec.variant
        self.scorer = rouge_scorer.RougeScorer([spec.variant], use_stemmer=spec.use_stemmer)

    def score(self, prediction: str, reference: str | None, example: EvalExample) -> MetricResult:
        if reference is None:
            return missing_reference(self.metric_id)
        return MetricResult.ok(self.scorer.score(reference, prediction)[self.variant].fmeasure)


class _SacrebleuMetric(Metric):
    """Shared shape of BLEU and chrF: sentence score per example, corpus score from summed stats."""

    corpus_level: ClassVar[bool] = True
    sentence: BLEU | CHRF
    corpus: BLEU | CHRF

    def score(self, prediction: str, reference: str | None, example: EvalExample) -> MetricResult:
        if reference is None:
            return missing_reference(self.metric_id)
        stats = self.sentence._extract_corpus_statistics([prediction], [[reference]])[0]
        value = self.sentence._compute_score_from_stats(stats).score
        return MetricResult.ok(value, stats=tuple(float(s) for s in stats))

    def corpus_score(self, stats: NDArray[np.float64]) -> float:
        # sacrebleu statistics are integer counts (n-gram matches, lengths).
        totals: list[int] = np.rint(np.asarray(stats, dtype=np.float64).sum(axis=0)).astype(int).tolist()
        return float(self.corpus._compute_score_from_stats(totals).score)


class Bleu(_SacrebleuMetric):
    kind = "bleu"

    def __init__(self, spec: BleuSpec) -> None:
        super().__init__(spec.metric_id)
        # Sentence BLEU uses effective order (as sacrebleu.sentence_bleu does); corpus BLEU does not.
        self.sentence = BLEU(tokenize=spec.tokenize, lowercase=spec.lowercase, effective_order=True)
        self.corpus = BLEU(tokenize=spec.tokenize, lowercase=spec.lowercase)


class Chrf(_SacrebleuMetric):
    kind = "chrf"

    def __init__(self, spec: ChrfSpec) -> None:
        super().__init__(spec.metric_id)
        self.sentence = CHRF(char_order=spec.char_order, word_order=spec.word_order, beta=spec.beta)
        self.corpus = self.sentence
