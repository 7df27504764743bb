"""Deterministic splits: same seed and key give the same split whatever the row order."""

from __future__ import annotations

import random

import pytest

from llmops.data.split import DatasetSplit, SplitFractions, SplitName, assign_split, split_rows
from llmops.errors import InvalidInput

ROWS = [{"id": f"r{i}", "text": f"row {i}"} for i in range(2000)]


def _assignment(split: DatasetSplit) -> dict[str, str]:
    return {row["id"]: name.value for name in SplitName for row in split.rows(name)}


def test_same_seed_same_split_and_order_independent() -> None:
    first = split_rows(ROWS, seed=3, key="id")
    shuffled = list(ROWS)
    random.Random(0).shuffle(shuffled)
    second = split_rows(shuffled, seed=3, key="id")
    assert _assignment(first) == _assignment(second)
    assert sum(first.sizes().values()) == len(ROWS)
    assert first.train == [r for r in ROWS if _assignment(first)[r["id"]] == "train"]  # input order kept


def test_other_seed_moves_rows() -> None:
    a = _assignment(split_rows(ROWS, seed=1, key="id"))
    b = _assignment(split_rows(ROWS, seed=2, key="id"))
    moved = sum(a[k] != b[k] for k in a)
    assert moved > len(ROWS) // 10


def test_fractions_are_respected_roughly() -> None:
    sizes = split_rows(ROWS, seed=0, key="id", fractions=SplitFractions(0.7, 0.2, 0.1)).sizes()
    assert abs(sizes["train"] - 1400) < 100
    assert abs(sizes["validation"] - 400) < 70
    assert abs(sizes["test"] - 200) < 60


def test_adding_rows_never_moves_old_ones() -> None:
    small = _assignment(split_rows(ROWS[:500], seed=5, key="id"))
    large = _assignment(split_rows(ROWS, seed=5, key="id"))
    assert all(large[k] == v for k, v in small.items())


def test_rows_sharing_a_key_share_a_split() -> None:
    rows = [{"prompt": f"p{i % 50}", "completion": str(i)} for i in range(500)]
    split = split_rows(rows, seed=0, key="prompt")
    seen: dict[str, set[str]] = {}
    for name in SplitName:
        for row in split.rows(name):
            seen.setdefault(row["prompt"], set()).add(name.value)
    assert all(len(names) == 1 for names in seen.values())
    assert len(seen) == 50


def test_without_key_identical_rows_stay_together() -> None:
    rows = [{"text": f"t{i % 30}"} for i in range(300)]
    split = split_rows(rows, seed=9)
    for name in SplitName:
        texts = {r["text"] for r in split.rows(name)}
        others = {r["text"] for other in SplitName if other != name for r in split.rows(other)}
        assert not texts & others


def test_zero_and_whole_fractions() -> None:
    only_train = split_rows(ROWS[:200], seed=0, key="id", fractions=SplitFractions(1.0, 0.0, 0.0))
    assert only_train.sizes() == {"train": 200, "validation": 0, "test": 0}
    no_test = split_rows(ROWS, seed=0, key="id", fractions=SplitFractions(0.5, 0.5, 0.0))
    assert no_test.sizes()["test"] == 0


@pytest.mark.parametrize(
    ("fractions", "param"),
    [((0.8, 0.1, 0.2), "fractions"), ((1.2, -0.1, -0.1), "train"), ((0.5, 0.5, -0.0001), "test")],
)
def test_fractions_validated(fractions: tuple[float, float, float], param: str) -> None:
    with pytest.raises(InvalidInput) as info:
        SplitFractions(*fractions)
    assert info.value.param == param


def test_missing_key_names_the_row() -> None:
    with pytest.raises(InvalidInput, match="row 2 has no field 'id'") as info:
        split_rows([{"id": "a"}, {"text": "b"}], seed=0, key="id")
    assert info.value.param == "key"


def test_assign_split_is_a_pure_function_of_seed_and_key() -> None:
    fractions = SplitFractions()
    assert assign_split("abc", seed=1, fractions=fractions) == assign_split(
        "abc", seed=1, fractions=fractions
    )
    values = {assign_split(i, seed=1, fractions=fractions) for i in range(200)}
    assert values == set(SplitName)
