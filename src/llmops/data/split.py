"""Deterministic train/validation/test splits.

A row's split is a function of the seed and the value of its key field only (a hash mapped onto
[0, 1)), never of its position: the same row lands in the same split whatever the order of the
file, and adding rows never moves old ones. Rows that share a key value share a split, so keying
by a prompt or a conversation id keeps copies of one example out of both train and test.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from llmops.data.schemas import Row
from llmops.errors import InvalidInput


class SplitName(StrEnum):
    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


@dataclass(frozen=True)
class SplitFractions:
    """The share of rows each split should get; each in [0, 1], summing to 1."""

    train: float = 0.8
    validation: float = 0.1
    test: float = 0.1

    def __post_init__(self) -> None:
        for name in ("train", "validation", "test"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise InvalidInput(f"split fraction {name} is {value!r}; use a number in [0, 1]", param=name)
        total = self.train + self.validation + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise InvalidInput(
                f"split fractions sum to {total:g} (train {self.train}, validation {self.validation}, "
                f"test {self.test}); make them sum to 1",
                param="fractions",
            )


@dataclass(frozen=True)
class DatasetSplit:
    """Rows of each split, each list in the order the rows came in."""

    train: list[Row] = field(default_factory=list)
    validation: list[Row] = field(default_factory=list)
    test: list[Row] = field(default_factory=list)

    def rows(self, name: SplitName | str) -> list[Row]:
        """The rows of split ``name`` (``train``, ``validation`` or ``test``)."""
        split: list[Row] = getattr(self, SplitName(name).value)
        return split

    def sizes(self) -> dict[str, int]:
        return {name.value: len(self.rows(name)) for name in SplitName}


def _canonical(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def split_point(key_value: Any, seed: int) -> float:
    """Where ``key_value`` falls in [0, 1) for ``seed``: the first 8 bytes of a sha256, scaled."""
    digest = hashlib.sha256(f"{seed}\x00{_canonical(key_value)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(key_value: Any, *, seed: int, fractions: SplitFractions) -> SplitName:
    """The split of a row whose key field holds ``key_value``."""
    point = split_point(key_value, seed)
    # Dividing by the total makes the last boundary exactly 1.0, so rounding never picks an empty split.
    total = fractions.train + fractions.validation + fractions.test
    if point < fractions.train / total:
        return SplitName.TRAIN
    if point < (fractions.train + fractions.validation) / total:
        return SplitName.VALIDATION
    return SplitName.TEST


def split_rows(
    rows: Sequence[Row], *, seed: int, key: str | None = None, fractions: SplitFractions | None = None
) -> DatasetSplit:
    """Split rows by the hash of ``seed`` and each row's ``key`` field.

    Without ``key`` the whole row (as canonical JSON) is the key, so identical rows stay together.
    A row without the key field raises ``InvalidInput`` naming its 1-based position.
    """
    fractions = fractions or SplitFractions()
    out = DatasetSplit()
    for position, row in enumerate(rows, start=1):
        if key is None:
            value: Any = row
        elif key in row:
            value = row[key]
        else:
            raise InvalidInput(
                f"row {position} has no field {key!r} to split by; "
                "add it to every row or split by another key",
                param="key",
            )
        out.rows(assign_split(value, seed=seed, fractions=fractions)).append(row)
    return out
