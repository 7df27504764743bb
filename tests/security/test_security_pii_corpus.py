"""Score the detector on the labelled corpus in tests/data/pii/corpus.jsonl.

A finding is a true positive when its type and exact span match a label. The table of precision
and recall per type is printed (``pytest -s tests/security/test_security_pii_corpus.py``) and the
numbers go into docs/security.md.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from llmops.security.pii import PIIDetector, PIIType

CORPUS = Path(__file__).resolve().parents[1] / "data" / "pii" / "corpus.jsonl"
# At most this many findings, in total, on the 101 hard-negative lines (~3%; measured: 3, see docs).
HARD_NEGATIVE_FP_BUDGET = 3


@dataclass
class Score:
    tp: Counter[str] = field(default_factory=Counter)
    fp: Counter[str] = field(default_factory=Counter)
    fn: Counter[str] = field(default_factory=Counter)
    hard_negative_fps: list[tuple[str, str, str]] = field(default_factory=list)
    misses: list[tuple[str, str, str]] = field(default_factory=list)

    def precision(self, kind: str) -> float:
        found = self.tp[kind] + self.fp[kind]
        return self.tp[kind] / found if found else 1.0

    def recall(self, kind: str) -> float:
        labelled = self.tp[kind] + self.fn[kind]
        return self.tp[kind] / labelled if labelled else 1.0

    def table(self) -> str:
        lines = [f"{'type':<12} {'labels':>6} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>9} {'recall':>7}"]
        for kind in [t.value for t in PIIType]:
            labels = self.tp[kind] + self.fn[kind]
            lines.append(
                f"{kind:<12} {labels:>6} {self.tp[kind]:>4} {self.fp[kind]:>4} {self.fn[kind]:>4} "
                f"{self.precision(kind):>9.3f} {self.recall(kind):>7.3f}"
            )
        return "\n".join(lines)


def load_corpus(split: str | None = None) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    return [row for row in rows if split is None or row["split"] == split]


def score_corpus(detector: PIIDetector, rows: list[dict[str, Any]]) -> Score:
    score = Score()
    for row in rows:
        expected = {(s["type"], s["start"], s["end"]) for s in row["spans"]}
        found = {(f.type.value, f.start, f.end) for f in detector.detect(row["text"])}
        for kind, start, end in found:
            if (kind, start, end) in expected:
                score.tp[kind] += 1
            else:
                score.fp[kind] += 1
                if row["kind"] == "hard_negative":
                    score.hard_negative_fps.append((row["id"], kind, row["text"][start:end]))
        for kind, start, end in expected - found:
            score.fn[kind] += 1
            score.misses.append((row["id"], kind, row["text"][start:end]))
    return score


@pytest.fixture(scope="module")
def corpus_score() -> Score:
    detector = PIIDetector()
    for split in ("tuning", "holdout", None):
        rows = load_corpus(split)
        score = score_corpus(detector, rows)
        negatives = sum(row["kind"] == "hard_negative" for row in rows)
        print(f"\nPII corpus, split={split or 'all'}: {len(rows)} rows, {negatives} hard negatives")
        print(score.table())
        print("missed:", score.misses)
        print("false positives on hard negatives:", score.hard_negative_fps)
    return score


def test_corpus_is_big_enough_and_covers_every_type() -> None:
    rows = load_corpus()
    labels = Counter(s["type"] for row in rows for s in row["spans"])
    assert sum(labels.values()) >= 150
    assert set(labels) == {t.value for t in PIIType}
    assert sum(row["kind"] == "hard_negative" for row in rows) >= 50
    for row in rows:
        for span in row["spans"]:
            assert row["text"][span["start"] : span["end"]] == span["value"]


@pytest.mark.parametrize("kind", [PIIType.CREDIT_CARD, PIIType.IBAN, PIIType.EMAIL])
def test_recall_on_checksummed_and_email_types(corpus_score: Score, kind: PIIType) -> None:
    assert corpus_score.recall(kind.value) >= 0.95, corpus_score.table()


@pytest.mark.parametrize("kind", list(PIIType))
def test_every_type_keeps_useful_precision_and_recall(corpus_score: Score, kind: PIIType) -> None:
    assert corpus_score.precision(kind.value) >= 0.9, corpus_score.table()
    assert corpus_score.recall(kind.value) >= 0.85, corpus_score.table()


def test_hard_negatives_stay_within_the_false_positive_budget(corpus_score: Score) -> None:
    assert len(corpus_score.hard_negative_fps) <= HARD_NEGATIVE_FP_BUDGET, corpus_score.hard_negative_fps
