"""Markdown and HTML reports: content, numbers, verdicts, gates, and escaping of untrusted text."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from llmops.evals.gates import GateInputs, GateReport, evaluate_gates
from llmops.evals.metric_base import EvalExample
from llmops.evals.metric_specs import ExactMatchSpec, RougeSpec
from llmops.evals.metrics import build_metric
from llmops.evals.report import md_cell, render_markdown
from llmops.evals.report_html import render_html
from llmops.evals.results import Comparison, ExampleOutcome, RunResults, RunSummary
from llmops.evals.scoring import score_example
from llmops.evals.stats import compare_runs
from llmops.evals.suite import GateSpec, StatisticsConfig
from llmops.evals.summary import summarize_run
from llmops.evals.svg_plots import histogram_svg, scatter_svg

RunFactory = Callable[..., RunResults]
EXACT = build_metric(ExactMatchSpec(name="exact_match"))
ROUGE = build_metric(RougeSpec(name="rouge"))
STATS = StatisticsConfig(resamples=200)
XSS = "<script>alert('pwned')</script>"


def _build(make_run: RunFactory) -> tuple[RunResults, RunSummary, Comparison, GateReport]:
    rng = np.random.default_rng(0)
    cand = make_run(
        "cand-v2",
        {"exact_match": (rng.random(100) < 0.9).astype(float).tolist(), "rouge": rng.random(100).tolist()},
    )
    base = make_run(
        "prod-v1",
        {"exact_match": (rng.random(100) < 0.4).astype(float).tolist(), "rouge": rng.random(100).tolist()},
    )
    summary = summarize_run(cand, [EXACT, ROUGE], STATS)
    comparison = compare_runs(cand, base, [EXACT, ROUGE], resamples=200)
    gates = evaluate_gates(
        [GateSpec(metric="exact_match", min=0.5), GateSpec(metric="rouge", min=0.9)],
        GateInputs(summary=summary, metrics=[EXACT, ROUGE], candidate=cand),
    )
    return cand, summary, comparison, gates


def test_markdown_has_tables_verdicts_and_gates(make_run: RunFactory) -> None:
    _, summary, comparison, gates = _build(make_run)
    text = render_markdown(summary, comparison, gates)
    exact = summary.get("exact_match")
    assert exact is not None and exact.interval is not None
    row = next(line for line in text.splitlines() if line.startswith("| `exact_match` |"))
    assert f"{exact.score:.4g}" in row and f"[{exact.interval.low:.4g}, {exact.interval.high:.4g}]" in row
    assert "| 100 |" in row
    assert "| metric | score | 95% CI | n | errors |" in text
    assert "cand-v2 vs prod-v1" in text
    compared = next(line for line in text.splitlines() if line.startswith("| `exact_match` (higher"))
    assert "better" in compared and "mcnemar exact" in compared and "< 0.0001" in compared
    assert "❌ **Gates failed.**" in text and "1 of 2 gates failed" in text
    assert "✅ pass" in text and "❌ fail" in text and "rouge = " in text


def test_markdown_cells_escape_pipes_newlines_and_html() -> None:
    assert md_cell("a|b\nc <b>") == "a\\|b c &lt;b&gt;"


def test_markdown_shows_errors(make_run: RunFactory) -> None:
    run = make_run("m", {"exact_match": [1.0, None]})
    text = render_markdown(summarize_run(run, [EXACT], STATS))
    assert "| 1 | 1 (judge endpoint unreachable) |" in text and "Evaluation finished." in text


def test_html_report_is_self_contained_with_plots(make_run: RunFactory) -> None:
    cand, summary, comparison, gates = _build(make_run)
    page = render_html(summary, cand, comparison, gates)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<svg") == 4  # histogram and scatter for each of two metrics
    assert "score distribution" in page and "length vs score" in page
    assert "Content-Security-Policy" in page and "<script" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched
    assert 'class="better"' in page and "Gates: 1 gate(s) failed" in page


def test_html_escapes_untrusted_text() -> None:
    metrics = [EXACT]
    example = EvalExample(example_id=XSS, prompt=f"prompt {XSS}")
    outcome = score_example(metrics, f"answer {XSS} & more", f"ref {XSS}", example)
    run = RunResults(suite=f"suite {XSS}", model=f"model {XSS}", outcomes=(outcome,))
    summary = summarize_run(run, metrics, STATS)
    page = render_html(summary, run)
    assert "<script>" not in page and "alert('pwned')" not in page
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    assert "answer &lt;script&gt;" in page and "&amp; more" in page
    markdown = render_markdown(summary)
    assert "<script>" not in markdown and "&lt;script&gt;" in markdown


def test_html_lists_errored_and_worst_examples_first(make_run: RunFactory) -> None:
    outcomes = []
    for i, value in enumerate([1.0, 0.0, 1.0, 1.0]):
        outcome = score_example([EXACT], "yes" if value else "no", "yes", EvalExample(f"ex{i}", f"q{i}"))
        outcomes.append(outcome)
    outcomes.append(ExampleOutcome("broken", "q", "p", None, {}))
    run = RunResults(suite="s", model="m", outcomes=tuple(outcomes))
    page = render_html(summarize_run(run, [EXACT], STATS), run, examples_per_metric=2)
    table = page.split("Worst and errored examples")[1]
    ids = re.findall(r"<tr><td>([^<]+)</td>", table)
    assert ids == ["broken", "ex1"]


def test_svg_plots_handle_edge_cases() -> None:
    assert "no data" in histogram_svg([], title="empty")
    binary = histogram_svg([0.0, 1.0, 1.0, 1.0], title="pass/fail")
    assert binary.count("<rect") == 2 and "<title>3</title>" in binary
    constant = scatter_svg([5.0, 5.0], [1.0, 1.0], title="t", x_label="x", y_label="y")
    assert constant.count("<circle") == 2 and "nan" not in constant
    labelled = histogram_svg([0.5], title="a <b> & c")
    assert "a &lt;b&gt; &amp; c" in labelled and "<b>" not in labelled
