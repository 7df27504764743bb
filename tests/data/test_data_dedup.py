"""Exact and near-duplicate removal with planted duplicates of known count."""

from __future__ import annotations

import random

import pytest

from llmops.data.cleaning import dedup_exact, dedup_near
from llmops.data.schemas import Row, SchemaKind
from llmops.errors import InvalidInput

TEXT = SchemaKind.TEXT


def _vocabulary(rng: random.Random, size: int = 600) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return sorted({"".join(rng.choice(letters) for _ in range(rng.randint(4, 8))) for _ in range(size)})


def _unique_rows(n: int, words_per_row: int = 40, seed: int = 0) -> list[Row]:
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    return [{"text": " ".join(rng.choice(vocab) for _ in range(words_per_row)), "id": i} for i in range(n)]


def _with_one_word_changed(row: Row, rng: random.Random) -> Row:
    words = row["text"].split()
    words[rng.randrange(len(words))] = "changed"
    return {"text": " ".join(words), "id": f"copy-of-{row['id']}"}


def _planted(seed: int = 0) -> tuple[list[Row], list[Row]]:
    """100 unique rows plus 20 near-copies (one word changed) of rows 0, 5, ..., 95, each after its row."""
    rng = random.Random(seed)
    originals = _unique_rows(100, seed=seed)
    rows = list(originals)
    for source in range(0, 100, 5):
        after = next(i for i, row in enumerate(rows) if row["id"] == source) + 1
        rows.insert(rng.randint(after, len(rows)), _with_one_word_changed(originals[source], rng))
    return originals, rows


def test_near_dedup_removes_exactly_the_planted_copies() -> None:
    originals, rows = _planted()
    assert len(rows) == 120
    kept, report = dedup_near(rows, TEXT, threshold=0.8)
    assert [r["id"] for r in kept] == [r["id"] for r in originals]
    assert report.removed == {"near_duplicate": 20}
    assert (report.rows_in, report.rows_out) == (120, 100)
    assert report.params["threshold"] == 0.8


def test_near_dedup_keeps_the_first_of_a_cluster() -> None:
    originals, _ = _planted()
    rng = random.Random(1)
    copy = _with_one_word_changed(originals[3], rng)
    kept, _ = dedup_near([copy, originals[3], originals[4]], TEXT)
    assert [r["id"] for r in kept] == [copy["id"], 4]


def test_near_dedup_is_deterministic_and_ignores_case_and_spacing() -> None:
    _, rows = _planted(seed=7)
    first, _ = dedup_near(rows, TEXT)
    second, _ = dedup_near(rows, TEXT)
    assert first == second
    loud = {"text": "  " + rows[0]["text"].upper().replace(" ", "   "), "id": "loud"}
    kept, report = dedup_near([rows[0], loud], TEXT)
    assert kept == [rows[0]]
    assert report.removed == {"near_duplicate": 1}


def test_near_dedup_word_shingles_and_threshold() -> None:
    _, rows = _planted()
    # One changed word in 40 moves a word-3-gram Jaccard to 0.86-0.95: caught at 0.7, never at 0.99.
    kept_loose, _ = dedup_near(rows, TEXT, threshold=0.7, shingle=3, unit="word")
    kept_strict, _ = dedup_near(rows, TEXT, threshold=0.99, shingle=3, unit="word")
    assert len(kept_loose) == 100
    assert len(kept_strict) == 120


def test_near_dedup_on_prompt_completion_rows() -> None:
    rows = [
        {"prompt": "Translate to French: the cat sits on the warm mat by the door", "completion": "le chat"},
        {"prompt": "Translate to French: the cat sits on the warm mat by the door.", "completion": "le chat"},
        {"prompt": "Summarise this long report about quarterly sales in Europe", "completion": "sales grew"},
    ]
    kept, report = dedup_near(rows, SchemaKind.PROMPT_COMPLETION)
    assert kept == [rows[0], rows[2]]
    assert report.rows_removed == 1


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"threshold": 0.0}, "threshold"), ({"num_perm": 4}, "num_perm"), ({"shingle": 0}, "shingle")],
)
def test_near_dedup_validates_params(kwargs: dict[str, float], param: str) -> None:
    with pytest.raises(InvalidInput) as info:
        dedup_near([{"text": "a"}], TEXT, **kwargs)  # type: ignore[arg-type]
    assert info.value.param == param


def test_exact_dedup_counts_and_normalises_whitespace() -> None:
    uniques = _unique_rows(50)
    rows = list(uniques)
    rows += [dict(uniques[i]) for i in range(0, 20, 2)]  # 10 exact copies
    rows += [
        {"text": "  " + uniques[i]["text"].replace(" ", " \t ") + "\n"} for i in range(1, 11, 2)
    ]  # 5 spaced
    rows.append({"text": uniques[0]["text"].upper()})  # case differs: not an exact duplicate
    kept, report = dedup_exact(rows, TEXT)
    assert kept == [*uniques, rows[-1]]
    assert report.removed == {"duplicate": 15}
    assert (report.name, report.rows_in, report.rows_out) == ("dedup_exact", 66, 51)


def test_exact_dedup_prompt_completion_needs_both_fields_equal() -> None:
    rows = [
        {"prompt": "q", "completion": "a"},
        {"prompt": "q", "completion": "b"},
        {"prompt": "q", "completion": "a", "id": "meta differs"},
    ]
    kept, report = dedup_exact(rows, SchemaKind.PROMPT_COMPLETION)
    assert kept == rows[:2]
    assert report.removed == {"duplicate": 1}
