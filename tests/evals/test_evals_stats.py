"""Bootstrap intervals, paired tests and verdicts, on seeded simulations with known answers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import sacrebleu
from scipy import stats as scipy_stats

from llmops.errors import InvalidInput
from llmops.evals.metric_base import EvalExample
from llmops.evals.metric_specs import BleuSpec, ExactMatchSpec, LatencyTtftSpec, RougeSpec
from llmops.evals.metrics import build_metric
from llmops.evals.results import ExampleOutcome, RunResults
from llmops.evals.stats import (
    bootstrap_mean_ci,
    bootstrap_statistic_ci,
    compare_runs,
    mcnemar_exact,
    paired_bootstrap_difference_ci,
    verdict_of,
    wilcoxon_p_value,
)
from llmops.evals.suite import StatisticsConfig
from llmops.evals.summary import summarize_metric, summarize_run

RunFactory = Callable[..., RunResults]

EXACT = build_metric(ExactMatchSpec(name="exact_match"))
ROUGE = build_metric(RougeSpec(name="rouge"))
TTFT = build_metric(LatencyTtftSpec(name="latency_ttft"))


def test_bootstrap_ci_covers_true_mean_in_seeded_simulation() -> None:
    rng = np.random.default_rng(123)
    trials, covered = 200, 0
    for trial in range(trials):
        sample = rng.normal(loc=0.7, scale=0.2, size=60)
        interval = bootstrap_mean_ci(sample, resamples=400, confidence=0.9, seed=trial)
        covered += interval.low <= 0.7 <= interval.high
    # Nominal 90%; the percentile bootstrap runs slightly narrow at n=60.
    assert 0.83 <= covered / trials <= 0.97


def test_bootstrap_ci_is_seeded_and_narrows_with_n() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.random(50), rng.random(5000)
    assert bootstrap_mean_ci(small, seed=1) == bootstrap_mean_ci(small, seed=1)
    assert bootstrap_mean_ci(small, seed=1) != bootstrap_mean_ci(small, seed=2)
    wide, narrow = bootstrap_mean_ci(small), bootstrap_mean_ci(large)
    assert (narrow.high - narrow.low) < (wide.high - wide.low) / 5
    assert narrow.low < float(large.mean()) < narrow.high
    assert bootstrap_mean_ci(small, confidence=0.99).low < bootstrap_mean_ci(small, confidence=0.8).low


def test_bootstrap_rejects_empty_and_bad_confidence() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        bootstrap_mean_ci([])
    with pytest.raises(InvalidInput, match="confidence"):
        bootstrap_mean_ci([1.0, 2.0], confidence=1.5)


def test_corpus_statistic_bootstrap_matches_corpus_score_center() -> None:
    rng = np.random.default_rng(5)
    words = ["the", "cat", "dog", "sat", "ran", "on", "mat", "rug", "a", "big"]
    refs = [" ".join(rng.choice(words, 8)) for _ in range(60)]
    hyps = [" ".join(w if rng.random() < 0.7 else "x" for w in r.split()) for r in refs]
    bleu = build_metric(BleuSpec(name="bleu"))
    rows = np.array([bleu.score(h, r, EvalExample("0", "q")).stats for h, r in zip(hyps, refs, strict=True)])
    interval = bootstrap_statistic_ci(rows, bleu.corpus_score, resamples=300)
    corpus = sacrebleu.corpus_bleu(hyps, [refs]).score
    assert interval.low < corpus < interval.high


def test_mcnemar_exact_matches_binomial_on_discordant_pairs() -> None:
    cand = [1, 1, 1, 1, 1, 1, 0, 1, 0, 0]
    base = [0, 0, 0, 0, 0, 1, 1, 1, 0, 0]
    result = mcnemar_exact(cand, base)
    assert (result.candidate_only_wins, result.baseline_only_wins) == (5, 1)
    assert result.p_value == pytest.approx(scipy_stats.binomtest(5, 6, 0.5).pvalue)
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]).p_value == 1.0
    with pytest.raises(InvalidInput, match="0 or 1"):
        mcnemar_exact([0.5], [1.0])


def test_wilcoxon_handles_all_zero_differences() -> None:
    assert wilcoxon_p_value([0.2, 0.4, 0.9], [0.2, 0.4, 0.9]) == 1.0
    rng = np.random.default_rng(3)
    base = rng.random(100)
    assert wilcoxon_p_value(base + 0.1, base) < 1e-6


def test_verdict_direction() -> None:
    from llmops.evals.results import Interval

    positive, negative, straddle = (
        Interval(0.1, 0.3, 0.95),
        Interval(-0.3, -0.1, 0.95),
        Interval(-0.1, 0.1, 0.95),
    )
    assert verdict_of(positive, higher_is_better=True) == "better"
    assert verdict_of(negative, higher_is_better=True) == "worse"
    assert verdict_of(straddle, higher_is_better=True) == "no_detectable_difference"
    assert verdict_of(positive, higher_is_better=False) == "worse"
    assert verdict_of(negative, higher_is_better=False) == "better"


def _pass_fail(rate: float, n: int, seed: int) -> list[float | None]:
    return (np.random.default_rng(seed).random(n) < rate).astype(float).tolist()


def test_clearly_better_candidate_is_better(make_run: RunFactory) -> None:
    candidate = make_run("cand", {"exact_match": _pass_fail(0.9, 200, seed=1)})
    baseline = make_run("base", {"exact_match": _pass_fail(0.4, 200, seed=2)})
    comparison = compare_runs(candidate, baseline, [EXACT])
    metric = comparison.get("exact_match")
    assert metric is not None and metric.interval is not None and metric.p_value is not None
    assert metric.verdict == "better"
    assert metric.interval.low > 0.3 and metric.interval.excludes_zero()
    assert metric.p_value < 0.01 and metric.test == "mcnemar_exact"
    assert metric.difference == pytest.approx((metric.candidate or 0) - (metric.baseline or 0))
    assert comparison.n_paired_examples == 200 and metric.n_pairs == 200
    # Swapping the roles gives the mirror verdict.
    assert compare_runs(baseline, candidate, [EXACT]).metrics[0].verdict == "worse"


def test_identical_candidates_show_no_difference(make_run: RunFactory) -> None:
    values = _pass_fail(0.6, 200, seed=4)
    scores = np.random.default_rng(9).random(200).tolist()
    candidate = make_run("cand", {"exact_match": values, "rouge": scores})
    baseline = make_run("base", {"exact_match": values, "rouge": scores})
    comparison = compare_runs(candidate, baseline, [EXACT, ROUGE])
    for metric in comparison.metrics:
        assert metric.verdict == "no_detectable_difference"
        assert metric.p_value == 1.0
        assert metric.interval is not None and metric.interval.low == metric.interval.high == 0.0


def test_continuous_metric_uses_wilcoxon_and_paired_bootstrap(make_run: RunFactory) -> None:
    rng = np.random.default_rng(11)
    base = rng.random(150)
    cand = np.clip(base + rng.normal(0.05, 0.05, 150), 0, 1)
    comparison = compare_runs(
        make_run("c", {"rouge": cand.tolist()}), make_run("b", {"rouge": base.tolist()}), [ROUGE]
    )
    metric = comparison.metrics[0]
    assert metric.test == "wilcoxon_signed_rank" and metric.verdict == "better"
    assert metric.p_value is not None and metric.p_value < 0.001
    # Pairing matters: the unpaired difference CI would straddle zero for this small shift.
    assert metric.interval is not None and metric.interval.low > 0


def test_lower_is_better_metric_verdict(make_run: RunFactory) -> None:
    rng = np.random.default_rng(2)
    base = rng.uniform(0.2, 0.4, 100)
    faster = make_run("c", {"latency_ttft": (base * 0.5).tolist()})
    comparison = compare_runs(faster, make_run("b", {"latency_ttft": base.tolist()}), [TTFT])
    assert comparison.metrics[0].verdict == "better"
    assert comparison.metrics[0].difference is not None and comparison.metrics[0].difference < 0


def test_paired_bootstrap_of_corpus_statistic() -> None:
    rows_c = np.array([[2.0, 1.0]] * 20)
    rows_b = np.array([[1.0, 1.0]] * 20)
    interval = paired_bootstrap_difference_ci(
        rows_c, rows_b, statistic=lambda rows: float(rows[:, 0].sum() / rows[:, 1].sum()), resamples=200
    )
    assert interval.low == pytest.approx(1.0) and interval.high == pytest.approx(1.0)


def test_compare_runs_pairs_by_id_and_skips_errors(make_run: RunFactory) -> None:
    candidate = make_run("c", {"exact_match": [1.0, None, 1.0, 0.0]}, ids=["a", "b", "c", "d"])
    baseline = make_run("b", {"exact_match": [0.0, 1.0, 1.0]}, ids=["c", "b", "z"])
    comparison = compare_runs(candidate, baseline, [EXACT])
    metric = comparison.metrics[0]
    assert comparison.n_paired_examples == 2 and comparison.n_unpaired_examples == 3
    assert metric.n_pairs == 1 and metric.n_errors == 1  # "b" errored in the candidate
    assert metric.candidate == 1.0 and metric.baseline == 0.0


def test_compare_runs_without_shared_ids_or_with_duplicates(make_run: RunFactory) -> None:
    with pytest.raises(InvalidInput, match="share no example ids"):
        compare_runs(
            make_run("c", {"exact_match": [1.0]}, ids=["a"]),
            make_run("b", {"exact_match": [1.0]}, ids=["b"]),
            [EXACT],
        )
    duplicated = make_run("c", {"exact_match": [1.0, 0.0]}, ids=["a", "a"])
    with pytest.raises(InvalidInput, match="twice"):
        compare_runs(duplicated, make_run("b", {"exact_match": [1.0]}, ids=["a"]), [EXACT])


def test_metric_errored_everywhere_is_not_compared(make_run: RunFactory) -> None:
    comparison = compare_runs(
        make_run("c", {"exact_match": [None, None]}), make_run("b", {"exact_match": [1.0, 0.0]}), [EXACT]
    )
    metric = comparison.metrics[0]
    assert metric.verdict is None and metric.error is not None and metric.n_errors == 2


def test_summarize_run_counts_errors_and_uses_suite_statistics(make_run: RunFactory) -> None:
    run = make_run("m", {"exact_match": [1.0, 0.0, 1.0, None], "rouge": [None, None, None, None]})
    summary = summarize_run(run, [EXACT, ROUGE], StatisticsConfig(resamples=200, confidence=0.8, seed=3))
    exact, rouge = summary.metrics
    assert exact.n == 3 and exact.n_errors == 1 and exact.score == pytest.approx(2 / 3)
    assert exact.interval is not None and exact.interval.confidence == 0.8 and exact.errored
    assert (
        rouge.score is None and rouge.interval is None and rouge.first_error == "judge endpoint unreachable"
    )
    with pytest.raises(InvalidInput, match="no examples"):
        summarize_run(RunResults(suite="s", model="m", outcomes=()), [EXACT])


def test_summarize_metric_for_missing_metric_in_outcome() -> None:
    outcome = ExampleOutcome(example_id="0", prompt="p", prediction="x", reference="x", scores={})
    run = RunResults(suite="s", model="m", outcomes=(outcome,))
    summary = summarize_metric(EXACT, run.metric_results("exact_match"))
    assert summary.errored and "no result recorded" in (summary.first_error or "")
