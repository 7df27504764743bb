"""Settings of drift detection: minimum sample sizes, profile sizes, thresholds and test levels.

One pydantic model, used by the profile builder, the comparison and the ``DriftMonitor``; the
defaults are the documented ones (``docs/monitoring.md``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DriftConfig(BaseModel):
    """How drift is measured and when a feature counts as drifted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_reference_samples: int = Field(
        default=100, ge=2, description="Fewest prompts a reference profile may be built from."
    )
    min_window_samples: int = Field(
        default=50, ge=2, description="Fewest prompts a current window needs before it is compared."
    )
    vocabulary_size: int = Field(
        default=30,
        ge=1,
        le=10_000,
        description="Words kept in the vocabulary histogram; the rest is 'other'.",
    )
    numeric_bins: int = Field(
        default=10, ge=2, le=100, description="Quantile bins of numeric features (prompt length) for PSI."
    )
    psi_threshold: float = Field(
        default=0.2, gt=0, description="PSI above which a length, vocabulary or label mix has drifted."
    )
    psi_pseudo_count: float = Field(
        default=0.5, gt=0, description="Count added to every histogram bin before PSI (epsilon smoothing)."
    )
    alpha: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="Significance level: a feature drifts only if its test's p-value is below this too.",
    )
    embedding_threshold: float = Field(
        default=0.2,
        gt=0,
        description="Standardised mean shift of embeddings (in reference standard deviations) that is drift.",
    )
    embedding_sample_size: int = Field(
        default=200,
        ge=0,
        le=5_000,
        description="Reference embeddings kept in the profile for the MMD test (0 keeps none).",
    )
    mmd_permutations: int = Field(
        default=300, ge=20, le=10_000, description="Permutations of the MMD test (its p-value is >= 1/(n+1))."
    )
    seed: int = Field(default=0, description="Seed of every random choice (sub-sampling, permutations).")
