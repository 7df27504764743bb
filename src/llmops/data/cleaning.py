"""Cleaning transforms over dataset rows: normalisation, length filter, exact and near dedup, PII scrub.

Each transform is a pure function ``(rows, kind, ...) -> (rows, TransformReport)``: it never changes
its input rows, keeps the order of the rows it keeps, and reports what it did so a dataset version
can record its own recipe. PII detection itself belongs to ``security``; this module only applies a
``PIIDetector`` to every text field.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from datasketch import MinHash, MinHashLSH

from llmops.data.schemas import Row, SchemaKind, map_text_fields, row_text
from llmops.errors import InvalidInput

NormalForm = Literal["NFC", "NFD", "NFKC", "NFKD"]
NORMAL_FORMS: tuple[NormalForm, ...] = ("NFC", "NFD", "NFKC", "NFKD")
ShingleUnit = Literal["char", "word"]

# Whitespace other than a newline (spaces, tabs, no-break and other Unicode spaces).
_INLINE_SPACE = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")
# C0/C1 control characters that are not whitespace, plus zero-width space and byte-order mark.
_INVISIBLE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u200b\ufeff]")


@dataclass(frozen=True)
class TransformReport:
    """What one transform did: its parameters, rows in and out, and why rows were removed.

    ``removed`` maps a reason (``"duplicate"``, ``"too_long"``, ...) to the rows removed for it;
    ``rows_modified`` counts kept rows whose text changed; ``findings`` counts PII findings.
    """

    name: str
    params: dict[str, Any]
    rows_in: int
    rows_out: int
    removed: dict[str, int] = field(default_factory=dict)
    rows_modified: int = 0
    findings: int = 0

    @property
    def rows_removed(self) -> int:
        return self.rows_in - self.rows_out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, for recording with a dataset version."""
        return asdict(self)


class PIIDetector(Protocol):
    """Finds and redacts personal data in text (implementations live in ``security``)."""

    def redact(self, text: str) -> tuple[str, int]:
        """Return the text with each finding replaced by a placeholder, and the number of findings."""
        ...


def _normal_form(form: str) -> NormalForm:
    if form not in NORMAL_FORMS:
        raise InvalidInput(
            f"unknown normal form {form!r}; use one of: {', '.join(NORMAL_FORMS)}", param="form"
        )
    return form


def normalize_text(text: str, form: str = "NFC") -> str:
    """Unicode-normalise ``text``, drop invisible control characters and tidy whitespace.

    Runs of spaces and tabs become one space, each line is stripped, line endings become ``\\n``
    and more than one blank line in a row becomes one (paragraph breaks survive).
    """
    text = unicodedata.normalize(_normal_form(form), text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _INVISIBLE.sub("", text)
    lines = (_INLINE_SPACE.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def normalize(rows: Sequence[Row], kind: SchemaKind, form: str = "NFC") -> tuple[list[Row], TransformReport]:
    """Apply ``normalize_text`` to every text field of every row; no row is removed."""
    _normal_form(form)  # fail before touching any row
    out = [map_text_fields(row, kind, lambda text: normalize_text(text, form)) for row in rows]
    modified = sum(1 for before, after in zip(rows, out, strict=True) if before != after)
    report = TransformReport("normalize", {"form": form}, len(rows), len(out), rows_modified=modified)
    return out, report


def filter_length(
    rows: Sequence[Row],
    kind: SchemaKind,
    count_tokens: Callable[[str], int],
    min_tokens: int = 1,
    max_tokens: int | None = None,
) -> tuple[list[Row], TransformReport]:
    """Keep rows whose ``row_text`` has between ``min_tokens`` and ``max_tokens`` tokens (inclusive)."""
    if min_tokens < 0:
        raise InvalidInput(f"min_tokens is {min_tokens}; use 0 or more", param="min_tokens")
    if max_tokens is not None and max_tokens < min_tokens:
        raise InvalidInput(
            f"max_tokens ({max_tokens}) is below min_tokens ({min_tokens}); raise it", param="max_tokens"
        )
    kept: list[Row] = []
    too_short = too_long = 0
    for row in rows:
        length = count_tokens(row_text(row, kind))
        if length < min_tokens:
            too_short += 1
        elif max_tokens is not None and length > max_tokens:
            too_long += 1
        else:
            kept.append(row)
    params = {"min_tokens": min_tokens, "max_tokens": max_tokens}
    removed = {"too_short": too_short, "too_long": too_long}
    return kept, TransformReport("filter_length", params, len(rows), len(kept), removed)


def text_digest(row: Row, kind: SchemaKind) -> str:
    """sha256 of the row's normalised text: equal digests mean exact duplicates."""
    return hashlib.sha256(normalize_text(row_text(row, kind)).encode("utf-8")).hexdigest()


def dedup_exact(rows: Sequence[Row], kind: SchemaKind) -> tuple[list[Row], TransformReport]:
    """Drop rows whose normalised text was already seen; the first copy is kept."""
    seen: set[str] = set()
    kept: list[Row] = []
    for row in rows:
        digest = text_digest(row, kind)
        if digest not in seen:
            seen.add(digest)
            kept.append(row)
    removed = {"duplicate": len(rows) - len(kept)}
    return kept, TransformReport("dedup_exact", {}, len(rows), len(kept), removed)


def shingles(text: str, size: int, unit: ShingleUnit) -> set[str]:
    """Overlapping character or word n-grams of the case-folded, normalised text.

    A text shorter than ``size`` is one shingle, so short rows still compare.
    """
    text = normalize_text(text).casefold()
    if unit == "word":
        words = text.split()
        return {" ".join(words[i : i + size]) for i in range(max(1, len(words) - size + 1))}
    return {text[i : i + size] for i in range(max(1, len(text) - size + 1))}


def _check_near_params(threshold: float, num_perm: int, shingle: int, unit: str) -> None:
    if not 0.0 < threshold <= 1.0:
        raise InvalidInput(f"threshold is {threshold}; use a Jaccard similarity in (0, 1]", param="threshold")
    if num_perm < 16:
        raise InvalidInput(f"num_perm is {num_perm}; use 16 or more (128 is usual)", param="num_perm")
    if shingle < 1:
        raise InvalidInput(f"shingle is {shingle}; use a size of 1 or more", param="shingle")
    if unit not in ("char", "word"):
        raise InvalidInput(f"unit is {unit!r}; use 'char' or 'word'", param="unit")


def dedup_near(
    rows: Sequence[Row],
    kind: SchemaKind,
    threshold: float = 0.8,
    num_perm: int = 128,
    shingle: int = 5,
    unit: ShingleUnit = "char",
    seed: int = 1,
) -> tuple[list[Row], TransformReport]:
    """Drop near-duplicates by MinHash LSH, keeping the first row of each cluster.

    A row is dropped when its estimated Jaccard similarity (over ``shingle``-sized ``unit``
    shingles) to an already kept row is at least ``threshold``. LSH finds candidates; the MinHash
    estimate confirms them. The result depends only on the rows, their order and ``seed``.
    Character shingles suit short rows: one changed word moves a word-5-gram Jaccard a long way.
    """
    _check_near_params(threshold, num_perm, shingle, unit)
    # LSH tuned with the default equal weights misses ~60% of pairs right at the threshold; weighting
    # false negatives 9:1 finds nearly all of them, and the MinHash estimate below drops the extra.
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
    # One set of permutations for all rows: building them is the costly part of a MinHash.
    template = MinHash(num_perm=num_perm, seed=seed)
    kept_hashes: dict[str, MinHash] = {}
    kept: list[Row] = []
    for index, row in enumerate(rows):
        minhash = MinHash(
            num_perm=num_perm, seed=seed, permutations=template.permutations, scheme=template.scheme
        )
        minhash.update_batch([s.encode("utf-8") for s in shingles(row_text(row, kind), shingle, unit)])
        if any(kept_hashes[key].jaccard(minhash) >= threshold for key in lsh.query(minhash)):
            continue
        key = str(index)
        lsh.insert(key, minhash)
        kept_hashes[key] = minhash
        kept.append(row)
    params = {"threshold": threshold, "num_perm": num_perm, "shingle": shingle, "unit": unit, "seed": seed}
    removed = {"near_duplicate": len(rows) - len(kept)}
    return kept, TransformReport("dedup_near", params, len(rows), len(kept), removed)


def scrub_pii(
    rows: Sequence[Row], kind: SchemaKind, detector: PIIDetector
) -> tuple[list[Row], TransformReport]:
    """Redact PII in every text field (text, prompt, completion, message contents); no row is removed."""
    out: list[Row] = []
    findings = modified = 0

    def redact(text: str) -> str:
        nonlocal findings
        redacted, found = detector.redact(text)
        findings += found
        return redacted

    for row in rows:
        before = findings
        out.append(map_text_fields(row, kind, redact))
        if findings > before:
            modified += 1
    params = {"detector": type(detector).__name__}
    report = TransformReport(
        "scrub_pii", params, len(rows), len(out), rows_modified=modified, findings=findings
    )
    return out, report
