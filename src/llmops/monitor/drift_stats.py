"""The statistics behind drift detection: PSI, Kolmogorov-Smirnov, chi-square, mean shift and MMD.

Pure functions over numpy arrays; nothing here knows about prompts or profiles. Effect sizes (PSI,
the standardised mean shift) say how large a change is; the tests (KS, chi-square, the MMD
permutation test) say whether it is larger than sampling noise. ``drift`` combines the two so a
small window cannot raise a false alarm by noise alone.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import stats

FloatArray = NDArray[np.float64]


def psi(reference_counts: FloatArray, current_counts: FloatArray, pseudo_count: float) -> float:
    """Population stability index of two histograms over the same bins.

    Every bin gets ``pseudo_count`` added before normalising (additive epsilon smoothing), so an
    empty bin on one side gives a large but finite term instead of ``inf``.
    """
    ref = np.asarray(reference_counts, dtype=np.float64) + pseudo_count
    cur = np.asarray(current_counts, dtype=np.float64) + pseudo_count
    p = ref / ref.sum()
    q = cur / cur.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def quantile_edges(reference_values: FloatArray, bins: int) -> FloatArray:
    """Interior bin edges at the reference's quantiles; ties (discrete values) merge bins."""
    probabilities = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    return np.unique(np.quantile(reference_values, probabilities))


def bin_counts(values: FloatArray, edges: FloatArray) -> FloatArray:
    """Counts of ``values`` in the ``len(edges) + 1`` bins the edges cut the real line into."""
    index = np.searchsorted(edges, values, side="right")
    return np.bincount(index, minlength=len(edges) + 1).astype(np.float64)


def ks_test(reference_values: FloatArray, current_values: FloatArray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov ``(statistic, p_value)``."""
    result = stats.ks_2samp(reference_values, current_values)
    return float(result.statistic), float(result.pvalue)


def chi2_homogeneity(reference_counts: FloatArray, current_counts: FloatArray) -> tuple[float, float]:
    """Chi-square test that two histograms come from one distribution: ``(statistic, p_value)``.

    Bins empty on both sides are dropped (they carry no information and break the test); with
    fewer than two bins left there is nothing to compare and the answer is ``(0.0, 1.0)``.
    """
    table = np.vstack([reference_counts, current_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def standardised_mean_shift(
    reference_mean: FloatArray, reference_std: FloatArray, reference_count: int, current: FloatArray
) -> float:
    """The root-mean-square shift of the mean, per dimension in units of the reference's spread.

    ``current`` is ``(n, d)``. Each dimension's squared z-score of the mean difference has
    expectation ``1/n_ref + 1/n_cur`` under no drift; that bias is subtracted so the score is near
    0 for two samples of one distribution whatever their sizes (a Cohen's-d-like effect size:
    0.2 small, 0.5 medium).
    """
    floor = 1e-6 * float(np.mean(reference_std)) + 1e-12  # a constant dimension must not divide by 0
    std = np.maximum(reference_std, floor)
    z2 = ((current.mean(axis=0) - reference_mean) / std) ** 2
    bias = 1.0 / reference_count + 1.0 / len(current)
    return float(np.sqrt(max(0.0, float(np.mean(z2)) - bias)))


def cosine_distance(a: FloatArray, b: FloatArray) -> float:
    """``1 - cos(a, b)``; 0 for parallel vectors, and 0 when either vector is zero."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0.0:
        return 0.0
    return float(1.0 - np.dot(a, b) / norm)


def mmd_permutation_test(x: FloatArray, y: FloatArray, permutations: int, seed: int) -> tuple[float, float]:
    """Maximum mean discrepancy with an RBF kernel and its permutation p-value: ``(mmd2, p)``.

    ``x`` is ``(m, d)``, ``y`` is ``(n, d)``. The kernel width is the median heuristic on the
    pooled sample. The statistic is the biased estimate ``w^T K w`` with ``w`` = ``+1/m`` on x and
    ``-1/n`` on y; permuting ``w`` gives the null distribution, all permutations in one product.
    """
    pooled = np.vstack([x, y])
    squared_norms = np.einsum("ij,ij->i", pooled, pooled)
    sq_dist = np.maximum(squared_norms[:, None] + squared_norms[None, :] - 2.0 * pooled @ pooled.T, 0.0)
    upper = sq_dist[np.triu_indices(len(pooled), k=1)]
    median = float(np.median(upper)) if upper.size else 0.0
    kernel = np.exp(-sq_dist / (median if median > 0 else 1.0))
    weights = np.concatenate([np.full(len(x), 1.0 / len(x)), np.full(len(y), -1.0 / len(y))])
    observed = float(weights @ kernel @ weights)
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(weights) for _ in range(permutations)])  # (B, m + n)
    null = np.einsum("bi,bi->b", shuffled @ kernel, shuffled)
    p_value = (1.0 + float(np.sum(null >= observed - 1e-12))) / (permutations + 1.0)
    return observed, p_value
