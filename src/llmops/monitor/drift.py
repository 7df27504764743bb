"""Drift detection: compare a window of recent prompts with a reference profile.

Each feature gets an effect size (``score``) with a ``threshold`` and, where the feature allows
it, a test's ``p_value``; a feature has ``drifted`` when its score is above the threshold AND the
test says the difference is not sampling noise (``p_value < alpha``). The features:

* ``prompt_length``: PSI over the reference's quantile bins; Kolmogorov-Smirnov test.
* ``vocabulary``: PSI over the reference's top-k words plus an "other" bucket; chi-square test.
* ``labels`` (when both sides are labelled): PSI over the intent/topic mix; chi-square test.
* ``embedding`` (when both sides have embeddings): the standardised shift of the mean embedding;
  the MMD permutation test (RBF kernel) on the stored reference sample.

The overall verdict is drifted when any feature is. Too few prompts on either side is an
``InvalidInput`` naming the minimum, never a verdict.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from llmops.errors import InvalidInput
from llmops.monitor import drift_stats
from llmops.monitor.drift_config import DriftConfig
from llmops.monitor.drift_features import (
    DriftProfile,
    DriftSample,
    EmbeddingProfile,
    label_histogram,
    require_samples,
    vocabulary_histogram,
)


class FeatureDrift(BaseModel):
    """One feature's comparison: drifted when ``score > threshold`` and ``p_value < alpha``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature: str = Field(description="prompt_length, vocabulary, labels or embedding.")
    method: str = Field(description="How score and p-value were computed, e.g. 'psi+ks'.")
    score: float = Field(description="Effect size (PSI, or the standardised mean shift).")
    threshold: float = Field(description="Score above which the feature may have drifted.")
    p_value: float | None = Field(description="The test's p-value; None when no test applies.")
    alpha: float = Field(description="Significance level the p-value must be below.")
    drifted: bool = Field(description="Whether this feature has drifted.")
    statistics: dict[str, float] = Field(default_factory=dict, description="Further numbers, for reading.")


class DriftReport(BaseModel):
    """The outcome of one drift check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_version: str | None = Field(default=None, description="The model version whose traffic it is.")
    checked_at: datetime = Field(description="When the check ran (UTC).")
    reference_source: str = Field(description="The reference profile's source.")
    reference_samples: int = Field(description="Prompts behind the reference profile.")
    window_samples: int = Field(description="Prompts in the current window.")
    drifted: bool = Field(description="The overall verdict: any feature drifted.")
    features: list[FeatureDrift] = Field(description="One entry per feature compared.")
    skipped: dict[str, str] = Field(default_factory=dict, description="Feature -> why it was not compared.")

    def feature(self, name: str) -> FeatureDrift:
        for entry in self.features:
            if entry.feature == name:
                return entry
        raise KeyError(name)


def _verdict(
    feature: str,
    method: str,
    score: float,
    threshold: float,
    p_value: float | None,
    config: DriftConfig,
    statistics: dict[str, float],
) -> FeatureDrift:
    significant = p_value is None or p_value < config.alpha
    return FeatureDrift(
        feature=feature,
        method=method,
        score=score,
        threshold=threshold,
        p_value=p_value,
        alpha=config.alpha,
        drifted=bool(score > threshold and significant),
        statistics=statistics,
    )


def length_drift(reference: DriftProfile, window: DriftSample, config: DriftConfig) -> FeatureDrift:
    """PSI over the reference's quantile bins of prompt length, and the KS test."""
    if window.length_unit != reference.length_unit:
        raise InvalidInput(
            f"the reference measures prompt length in {reference.length_unit} but the window in "
            f"{window.length_unit}; give token counts on both sides or on neither",
            param="token_counts",
        )
    ref_values, cur_values = reference.length_values(), window.lengths()
    edges = drift_stats.quantile_edges(ref_values, config.numeric_bins)
    score = drift_stats.psi(
        drift_stats.bin_counts(ref_values, edges),
        drift_stats.bin_counts(cur_values, edges),
        config.psi_pseudo_count,
    )
    statistic, p_value = drift_stats.ks_test(ref_values, cur_values)
    stats = {
        "ks_statistic": statistic,
        "reference_mean": float(ref_values.mean()),
        "window_mean": float(cur_values.mean()),
    }
    return _verdict("prompt_length", "psi+ks", score, config.psi_threshold, p_value, config, stats)


def _categorical(
    feature: str, reference: NDArray[np.float64], current: NDArray[np.float64], config: DriftConfig
) -> FeatureDrift:
    score = drift_stats.psi(reference, current, config.psi_pseudo_count)
    statistic, p_value = drift_stats.chi2_homogeneity(reference, current)
    total = float(current.sum())
    stats = {"chi2": statistic, "window_other_share": float(current[-1]) / total if total else 0.0}
    return _verdict(feature, "psi+chi2", score, config.psi_threshold, p_value, config, stats)


def vocabulary_drift(reference: DriftProfile, window: DriftSample, config: DriftConfig) -> FeatureDrift:
    """PSI and chi-square over the reference's top-k words plus "other"."""
    current = vocabulary_histogram(window.prompts, reference.vocabulary)
    return _categorical("vocabulary", reference.vocabulary_histogram(), current, config)


def label_drift(label_counts: dict[str, int], labels: tuple[str, ...], config: DriftConfig) -> FeatureDrift:
    """PSI and chi-square over the labelled intent/topic mix (unseen labels share one bucket)."""
    categories = sorted(label_counts)
    reference = np.asarray([*(label_counts[c] for c in categories), 0], dtype=np.float64)
    return _categorical("labels", reference, label_histogram(labels, categories), config)


def embedding_drift(
    reference: EmbeddingProfile, embeddings: NDArray[np.float64], config: DriftConfig
) -> FeatureDrift:
    """Standardised mean shift of the embeddings, with the MMD permutation test when a sample is stored."""
    if embeddings.shape[1] != reference.dim:
        raise InvalidInput(
            f"window embeddings have {embeddings.shape[1]} dimensions, the reference has {reference.dim}",
            param="embeddings",
        )
    mean, std = np.asarray(reference.mean), np.asarray(reference.std)
    score = drift_stats.standardised_mean_shift(mean, std, reference.count, embeddings)
    stats = {"cosine_distance": drift_stats.cosine_distance(mean, embeddings.mean(axis=0))}
    p_value: float | None = None
    if reference.sample:
        rng = np.random.default_rng(config.seed)
        keep = min(len(embeddings), max(config.embedding_sample_size, len(reference.sample)))
        window_rows = embeddings[np.sort(rng.choice(len(embeddings), size=keep, replace=False))]
        mmd2, p_value = drift_stats.mmd_permutation_test(
            np.asarray(reference.sample), window_rows, config.mmd_permutations, config.seed
        )
        stats["mmd2"] = mmd2
    return _verdict("embedding", "mean_shift+mmd", score, config.embedding_threshold, p_value, config, stats)


def compare(
    reference: DriftProfile,
    window: DriftSample,
    config: DriftConfig | None = None,
    *,
    model_version: str | None = None,
) -> DriftReport:
    """Compare ``window`` with ``reference``; ``InvalidInput`` when either side has too few prompts."""
    config = config or DriftConfig()
    require_samples(reference.samples, config.min_reference_samples, "reference")
    require_samples(window.size, config.min_window_samples, "window")
    features = [length_drift(reference, window, config), vocabulary_drift(reference, window, config)]
    skipped: dict[str, str] = {}
    if reference.label_counts is not None and window.labels is not None:
        features.append(label_drift(reference.label_counts, window.labels, config))
    elif reference.label_counts is not None or window.labels is not None:
        skipped["labels"] = "only one side is labelled"
    if reference.embedding is not None and window.embeddings is not None:
        features.append(embedding_drift(reference.embedding, window.embeddings, config))
    elif reference.embedding is not None or window.embeddings is not None:
        skipped["embedding"] = "only one side has embeddings"
    return DriftReport(
        model_version=model_version,
        checked_at=datetime.now(UTC),
        reference_source=reference.source,
        reference_samples=reference.samples,
        window_samples=window.size,
        drifted=any(feature.drifted for feature in features),
        features=features,
        skipped=skipped,
    )
