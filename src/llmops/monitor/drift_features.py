"""What drift detection measures in a set of prompts, and the reference profile that stores it.

A ``DriftSample`` is one side of a comparison: prompts plus, optionally, their embeddings
``(n, d)``, intent/topic labels and token counts. ``build_profile`` summarises a reference sample
into a ``DriftProfile``: the prompt-length histogram (words, or tokens when counts are given), the
top-k vocabulary with an "other" bucket, the label mix, and the embedding distribution (mean,
per-dimension spread, a covariance summary and a bounded sample for the MMD test). Profiles are
pydantic models, so they serialise to JSON and can be stored as artifacts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmops.errors import InvalidInput
from llmops.monitor.drift_config import DriftConfig

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
OTHER = "<other>"
_TOP_EIGENVALUES = 10
_SPECTRUM_ROWS = 2000
LengthUnit = Literal["words", "tokens"]


def words(text: str) -> list[str]:
    """The lower-cased words of ``text`` (letters and digits; an inner apostrophe is kept)."""
    return _WORD.findall(text.casefold())


def require_samples(count: int, minimum: int, what: str) -> None:
    """``InvalidInput`` unless ``count >= minimum``: too few samples must never read as drift."""
    if count < minimum:
        raise InvalidInput(
            f"drift check needs at least {minimum} samples in the {what}, got {count}; "
            f"collect more prompts or lower min_{what}_samples",
            param=what,
        )


@dataclass(frozen=True)
class DriftSample:
    """Prompts of one side of a comparison, with optional embeddings, labels and token counts."""

    prompts: tuple[str, ...]
    embeddings: NDArray[np.float64] | None = None
    labels: tuple[str, ...] | None = None
    token_counts: tuple[int, ...] | None = None

    @classmethod
    def of(
        cls,
        prompts: Sequence[str],
        *,
        embeddings: Sequence[Sequence[float]] | NDArray[np.float64] | None = None,
        labels: Sequence[str] | None = None,
        token_counts: Sequence[int] | None = None,
    ) -> DriftSample:
        """A validated sample; every optional column must have one entry per prompt."""
        count = len(prompts)
        if any(not isinstance(prompt, str) for prompt in prompts):
            raise InvalidInput("every prompt must be a string", param="prompts")
        matrix = None if embeddings is None else _embedding_matrix(embeddings, count)
        for name, column in (("labels", labels), ("token_counts", token_counts)):
            if column is not None and len(column) != count:
                raise InvalidInput(f"{name} has {len(column)} entries for {count} prompts", param=name)
        if token_counts is not None and any(int(value) < 0 for value in token_counts):
            raise InvalidInput("token counts must be 0 or more", param="token_counts")
        return cls(
            prompts=tuple(prompts),
            embeddings=matrix,
            labels=None if labels is None else tuple(str(label) for label in labels),
            token_counts=None if token_counts is None else tuple(int(value) for value in token_counts),
        )

    @property
    def size(self) -> int:
        return len(self.prompts)

    @property
    def length_unit(self) -> LengthUnit:
        return "words" if self.token_counts is None else "tokens"

    def lengths(self) -> NDArray[np.float64]:
        """Prompt lengths in ``length_unit``."""
        if self.token_counts is not None:
            return np.asarray(self.token_counts, dtype=np.float64)
        return np.asarray([len(words(prompt)) for prompt in self.prompts], dtype=np.float64)


def _embedding_matrix(
    embeddings: Sequence[Sequence[float]] | NDArray[np.float64], count: int
) -> NDArray[np.float64]:
    try:
        matrix = np.asarray(embeddings, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("embeddings must be equal-length lists of numbers", param="embeddings") from exc
    if matrix.ndim != 2 or matrix.shape[0] != count or matrix.shape[1] == 0:
        raise InvalidInput(
            f"embeddings must be a ({count}, d) matrix, one vector per prompt; got shape {matrix.shape}",
            param="embeddings",
        )
    if not np.all(np.isfinite(matrix)):
        raise InvalidInput("embeddings contain NaN or infinite values", param="embeddings")
    return matrix


class EmbeddingProfile(BaseModel):
    """The reference's embedding distribution: mean, per-dimension spread, covariance summary, sample."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int = Field(description="Embedding dimension d.")
    count: int = Field(description="Embeddings the summary was computed from.")
    mean: list[float] = Field(description="Mean vector (d).")
    std: list[float] = Field(description="Per-dimension standard deviation (d).")
    covariance_trace: float = Field(description="Total variance: the trace of the covariance matrix.")
    top_eigenvalues: list[float] = Field(description="Largest eigenvalues of the covariance, descending.")
    sample: list[list[float]] = Field(description="A seeded random subset of the vectors, for the MMD test.")


class DriftProfile(BaseModel):
    """The reference side of drift detection, as stored (JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = Field(default=1, description="Version of this JSON layout.")
    created_at: datetime = Field(description="When the profile was built (UTC).")
    source: str = Field(default="", description="What the prompts were, e.g. 'dataset intent@3'.")
    samples: int = Field(description="Prompts the profile was built from.")
    length_unit: LengthUnit = Field(description="Unit of the prompt lengths.")
    length_counts: dict[int, int] = Field(description="Prompt length -> number of prompts.")
    vocabulary: list[str] = Field(description="The top-k words, most frequent first.")
    vocabulary_counts: list[int] = Field(description="Occurrences of each vocabulary word.")
    other_count: int = Field(description="Occurrences of all other words.")
    label_counts: dict[str, int] | None = Field(default=None, description="Label -> prompts, if labelled.")
    embedding: EmbeddingProfile | None = Field(default=None, description="Embedding summary, if given.")

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> DriftProfile:
        """Parse a stored profile; a malformed one is ``InvalidInput`` naming the first bad field."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"]) or "profile"
            raise InvalidInput(f"drift profile is invalid at {field}: {error['msg']}", param=field) from exc

    def length_values(self) -> NDArray[np.float64]:
        """The reference lengths, one per prompt (rebuilt from the histogram)."""
        keys = np.asarray(list(self.length_counts), dtype=np.float64)
        return np.repeat(keys, list(self.length_counts.values()))

    def vocabulary_histogram(self) -> NDArray[np.float64]:
        return np.asarray([*self.vocabulary_counts, self.other_count], dtype=np.float64)


def word_counts(prompts: Iterable[str]) -> Counter[str]:
    return Counter(word for prompt in prompts for word in words(prompt))


def vocabulary_histogram(prompts: Iterable[str], vocabulary: Sequence[str]) -> NDArray[np.float64]:
    """Counts of each vocabulary word in ``prompts``, then the count of every other word."""
    counts = word_counts(prompts)
    known = [counts.get(word, 0) for word in vocabulary]
    return np.asarray([*known, sum(counts.values()) - sum(known)], dtype=np.float64)


def label_histogram(labels: Iterable[str], categories: Sequence[str]) -> NDArray[np.float64]:
    """Counts of each category, then of labels outside them (new intents land in the last bucket)."""
    counts = Counter(labels)
    known = [counts.get(category, 0) for category in categories]
    return np.asarray([*known, sum(counts.values()) - sum(known)], dtype=np.float64)


def summarise_embeddings(matrix: NDArray[np.float64], config: DriftConfig) -> EmbeddingProfile:
    """Mean, spread and covariance summary of ``matrix`` ``(n, d)``, plus a seeded sample of rows."""
    rng = np.random.default_rng(config.seed)
    # Eigenvalues of the covariance from the singular values of the centred data (no d x d matrix),
    # on at most _SPECTRUM_ROWS rows so a large reference stays cheap; the trace uses every row.
    spectrum_rows = matrix[rng.choice(len(matrix), size=min(len(matrix), _SPECTRUM_ROWS), replace=False)]
    singular = np.linalg.svd(spectrum_rows - spectrum_rows.mean(axis=0), compute_uv=False)
    eigenvalues = singular**2 / max(len(spectrum_rows) - 1, 1)
    variance = matrix.var(axis=0, ddof=1)
    keep = min(config.embedding_sample_size, len(matrix))
    rows = np.sort(rng.choice(len(matrix), size=keep, replace=False))
    return EmbeddingProfile(
        dim=int(matrix.shape[1]),
        count=len(matrix),
        mean=matrix.mean(axis=0).tolist(),
        std=np.sqrt(variance).tolist(),
        covariance_trace=float(variance.sum()),
        top_eigenvalues=eigenvalues[:_TOP_EIGENVALUES].tolist(),
        sample=matrix[rows].tolist(),
    )


def build_profile(
    sample: DriftSample, config: DriftConfig | None = None, *, source: str = ""
) -> DriftProfile:
    """The reference profile of ``sample``; ``InvalidInput`` when it has too few prompts."""
    config = config or DriftConfig()
    require_samples(sample.size, config.min_reference_samples, "reference")
    lengths = Counter(int(value) for value in sample.lengths())
    counts = word_counts(sample.prompts)
    top = counts.most_common(config.vocabulary_size)
    return DriftProfile(
        created_at=datetime.now(UTC),
        source=source,
        samples=sample.size,
        length_unit=sample.length_unit,
        length_counts=dict(sorted(lengths.items())),
        vocabulary=[word for word, _ in top],
        vocabulary_counts=[count for _, count in top],
        other_count=sum(counts.values()) - sum(count for _, count in top),
        label_counts=None if sample.labels is None else dict(sorted(Counter(sample.labels).items())),
        embedding=None if sample.embeddings is None else summarise_embeddings(sample.embeddings, config),
    )
