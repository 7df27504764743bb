"""Drift detection: synthetic default vs shifted traffic, embeddings, too few samples, profiles as JSON."""

from __future__ import annotations

import numpy as np
import pytest

from llmops.data.synth import generate
from llmops.errors import InvalidInput
from llmops.monitor import drift_stats
from llmops.monitor.drift import compare, embedding_drift
from llmops.monitor.drift_config import DriftConfig
from llmops.monitor.drift_features import DriftProfile, DriftSample, build_profile, words


def _intent_sample(n: int, seed: int, domain: str = "default", *, labelled: bool = False) -> DriftSample:
    rows = generate("intent", n, seed=seed, domain=domain)
    labels = [row["completion"] for row in rows] if labelled else None
    return DriftSample.of([row["prompt"] for row in rows], labels=labels)


@pytest.fixture(scope="module")
def reference() -> DriftProfile:
    return build_profile(_intent_sample(400, seed=0, labelled=True), source="synth intent default seed 0")


def test_fresh_default_traffic_stays_under_the_threshold(reference: DriftProfile) -> None:
    report = compare(reference, _intent_sample(200, seed=1, labelled=True), model_version="v1")
    assert not report.drifted
    assert {f.feature for f in report.features} == {"prompt_length", "vocabulary", "labels"}
    vocabulary = report.feature("vocabulary")
    assert vocabulary.score < vocabulary.threshold
    assert report.window_samples == 200 and report.model_version == "v1"


@pytest.mark.parametrize("seed", range(2, 10))
def test_small_default_windows_raise_no_false_alarm(reference: DriftProfile, seed: int) -> None:
    assert not compare(reference, _intent_sample(60, seed=seed)).drifted


def test_shifted_domain_crosses_the_threshold(reference: DriftProfile) -> None:
    report = compare(reference, _intent_sample(200, seed=1, domain="shifted", labelled=True))
    assert report.drifted
    vocabulary = report.feature("vocabulary")
    assert vocabulary.drifted
    assert vocabulary.score > 5 * vocabulary.threshold
    assert vocabulary.p_value is not None and vocabulary.p_value < vocabulary.alpha
    # The shifted domain keeps the intents: the label mix must not be what flagged it.
    assert not report.feature("labels").drifted


def test_a_changed_intent_mix_is_label_drift(reference: DriftProfile) -> None:
    rows = [
        r for r in generate("intent", 600, seed=3) if r["completion"].startswith(("We have started", "Your"))
    ]
    window = DriftSample.of([r["prompt"] for r in rows], labels=[r["completion"] for r in rows])
    labels = compare(reference, window).feature("labels")
    assert labels.drifted and labels.score > labels.threshold


def test_only_one_labelled_side_skips_the_label_feature(reference: DriftProfile) -> None:
    report = compare(reference, _intent_sample(100, seed=4))
    assert "labels" in report.skipped
    with pytest.raises(KeyError):
        report.feature("labels")


def _cloud(n: int, shift: float, seed: int, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)) + shift


def test_embedding_distance_separates_shifted_from_same_mean_clouds() -> None:
    config = DriftConfig()
    reference = build_profile(DriftSample.of(["hello there"] * 400, embeddings=_cloud(400, 0.0, 0)))
    assert reference.embedding is not None
    assert reference.embedding.covariance_trace == pytest.approx(8.0, rel=0.15)  # 8 unit-variance dims
    eigenvalues = reference.embedding.top_eigenvalues
    assert len(eigenvalues) == 8 and eigenvalues == sorted(eigenvalues, reverse=True)
    same = embedding_drift(reference.embedding, _cloud(150, 0.0, 1), config)
    shifted = embedding_drift(reference.embedding, _cloud(150, 0.5, 2), config)
    assert not same.drifted and same.score < same.threshold
    assert shifted.drifted and shifted.score > 2 * shifted.threshold
    assert shifted.p_value is not None and shifted.p_value < config.alpha
    assert same.p_value is not None and same.p_value > config.alpha
    assert shifted.statistics["mmd2"] > same.statistics["mmd2"]


def test_embedding_feature_in_a_full_comparison() -> None:
    reference = build_profile(DriftSample.of(["hello there"] * 300, embeddings=_cloud(300, 0.0, 0, dim=4)))
    report = compare(reference, DriftSample.of(["hello there"] * 100, embeddings=_cloud(100, 1.0, 5, dim=4)))
    assert report.drifted and report.feature("embedding").drifted
    assert not report.feature("vocabulary").drifted


def test_embedding_dimension_mismatch_is_invalid_input() -> None:
    reference = build_profile(DriftSample.of(["a"] * 120, embeddings=_cloud(120, 0.0, 0, dim=4)))
    with pytest.raises(InvalidInput) as info:
        compare(reference, DriftSample.of(["a"] * 60, embeddings=_cloud(60, 0.0, 1, dim=5)))
    assert info.value.param == "embeddings"


def test_too_few_reference_prompts_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="needs at least 100 samples in the reference, got 40") as info:
        build_profile(_intent_sample(40, seed=0))
    assert info.value.param == "reference"


def test_too_small_a_window_is_an_error_not_a_verdict(reference: DriftProfile) -> None:
    with pytest.raises(InvalidInput, match="needs at least 50 samples in the window, got 12") as info:
        compare(reference, _intent_sample(12, seed=1, domain="shifted"))
    assert info.value.param == "window"


def test_minimums_are_configurable(reference: DriftProfile) -> None:
    with pytest.raises(InvalidInput, match="at least 500 samples in the reference"):
        compare(reference, _intent_sample(100, seed=1), DriftConfig(min_reference_samples=500))


def test_profile_round_trips_through_json(reference: DriftProfile) -> None:
    restored = DriftProfile.from_json(reference.to_json())
    assert restored == reference
    window = _intent_sample(100, seed=7, domain="shifted")
    assert (
        compare(restored, window).feature("vocabulary").score
        == compare(reference, window).feature("vocabulary").score
    )


def test_a_malformed_profile_names_the_field(reference: DriftProfile) -> None:
    broken = reference.to_json().replace('"samples":400', '"samples":"many"')
    with pytest.raises(InvalidInput) as info:
        DriftProfile.from_json(broken)
    assert info.value.param == "samples"


def test_token_counts_and_word_counts_do_not_mix(reference: DriftProfile) -> None:
    prompts = [row["prompt"] for row in generate("intent", 60, seed=1)]
    with pytest.raises(InvalidInput) as info:
        compare(reference, DriftSample.of(prompts, token_counts=[10] * 60))
    assert info.value.param == "token_counts"


def test_sample_columns_must_match_the_prompts() -> None:
    with pytest.raises(InvalidInput) as info:
        DriftSample.of(["a", "b"], labels=["x"])
    assert info.value.param == "labels"
    with pytest.raises(InvalidInput):
        DriftSample.of(["a", "b"], embeddings=[[0.0, float("nan")], [1.0, 2.0]])


def test_words_are_lowercased_and_keep_inner_apostrophes() -> None:
    assert words("Hi! I can't FIND my_kettle, 2 days.") == [
        "hi",
        "i",
        "can't",
        "find",
        "my",
        "kettle",
        "2",
        "days",
    ]


def test_psi_is_zero_for_equal_histograms_and_finite_for_empty_bins() -> None:
    counts = np.array([10.0, 20.0, 30.0])
    assert drift_stats.psi(counts, counts * 2, 0.5) == pytest.approx(0.0, abs=1e-3)
    value = drift_stats.psi(counts, np.array([0.0, 0.0, 60.0]), 0.5)
    assert np.isfinite(value) and value > 1.0
