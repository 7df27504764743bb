"""Markdown reports of a run, a comparison and its gates, fit for a pull-request comment.

Tables give each metric's score, confidence interval and n; the comparison its difference,
interval, p-value and verdict; the gates what decided them. Text from suites, models and judges is
escaped for table cells (``|``, newlines, HTML), since a PR comment renders some HTML. The number
formatting here is shared with the HTML report (``report_html``).
"""

from __future__ import annotations

from llmops.evals.gates import GateReport, GateResult
from llmops.evals.results import Comparison, Interval, MetricComparison, MetricSummary, RunSummary, Verdict

VERDICT_LABELS: dict[Verdict, str] = {
    "better": "better",
    "worse": "worse",
    "no_detectable_difference": "no detectable difference",
}
_VERDICT_ICONS: dict[Verdict, str] = {"better": "🟢", "worse": "🔴", "no_detectable_difference": "⚪"}


def format_number(value: float | None, *, signed: bool = False) -> str:
    """Four significant digits, or an em dash for a missing number."""
    if value is None:
        return "—"
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def format_interval(interval: Interval | None, *, signed: bool = False) -> str:
    if interval is None:
        return "—"
    return f"[{format_number(interval.low, signed=signed)}, {format_number(interval.high, signed=signed)}]"


def format_p_value(p_value: float | None) -> str:
    if p_value is None:
        return "—"
    return "< 0.0001" if p_value < 1e-4 else f"{p_value:.4f}"


def verdict_text(comparison: MetricComparison) -> str:
    if comparison.verdict is None:
        return f"not compared: {comparison.error or 'unknown reason'}"
    return VERDICT_LABELS[comparison.verdict]


def direction_text(higher_is_better: bool) -> str:
    return "higher is better" if higher_is_better else "lower is better"


def md_cell(text: str) -> str:
    """Text made safe for one markdown table cell."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(text.replace("|", "\\|").split())


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _summary_row(metric: MetricSummary) -> list[str]:
    errors = str(metric.n_errors)
    if metric.first_error:
        errors += f" ({md_cell(metric.first_error[:120])})"
    return [
        f"`{md_cell(metric.info.metric_id)}`",
        format_number(metric.score),
        format_interval(metric.interval),
        str(metric.n),
        errors,
    ]


def render_summary_markdown(summary: RunSummary) -> str:
    """One table: each metric's run score, CI and n."""
    confidence = next((m.interval.confidence for m in summary.metrics if m.interval), 0.95)
    lines = [
        f"### {md_cell(summary.suite)}: {md_cell(summary.model)}",
        "",
        f"{summary.n_examples} examples.",
        "",
    ]
    header = ["metric", "score", f"{confidence:.0%} CI", "n", "errors"]
    lines.extend(_table(header, [_summary_row(metric) for metric in summary.metrics]))
    return "\n".join(lines) + "\n"


def _comparison_row(metric: MetricComparison) -> list[str]:
    verdict = verdict_text(metric)
    if metric.verdict is not None:
        verdict = f"{_VERDICT_ICONS[metric.verdict]} {verdict}"
    return [
        f"`{md_cell(metric.info.metric_id)}` ({direction_text(metric.info.higher_is_better)})",
        format_number(metric.candidate),
        format_number(metric.baseline),
        format_number(metric.difference, signed=True),
        format_interval(metric.interval, signed=True),
        format_p_value(metric.p_value),
        metric.test.replace("_", " "),
        str(metric.n_pairs),
        md_cell(verdict),
    ]


def render_comparison_markdown(comparison: Comparison) -> str:
    """Candidate vs baseline, one row per metric, with the verdict."""
    confidence = next((m.interval.confidence for m in comparison.metrics if m.interval), 0.95)
    lines = [
        f"### {md_cell(comparison.candidate)} vs {md_cell(comparison.baseline)}",
        "",
        f"{comparison.n_paired_examples} paired examples"
        + (
            f" ({comparison.n_unpaired_examples} unpaired, left out)."
            if comparison.n_unpaired_examples
            else "."
        ),
        "",
    ]
    header = [
        "metric",
        "candidate",
        "baseline",
        "Δ",
        f"{confidence:.0%} CI of Δ",
        "p",
        "test",
        "n",
        "verdict",
    ]
    lines.extend(_table(header, [_comparison_row(metric) for metric in comparison.metrics]))
    return "\n".join(lines) + "\n"


def _gate_row(result: GateResult) -> list[str]:
    return [
        md_cell(result.name),
        "✅ pass" if result.passed else "❌ fail",
        format_number(result.observed, signed=result.kind == "no_regression"),
        format_number(result.threshold),
        format_interval(result.interval, signed=result.kind == "no_regression"),
        md_cell(result.reason),
    ]


def render_gates_markdown(report: GateReport) -> str:
    """Every gate with the numbers that decided it."""
    if not report.results:
        return "### Gates\n\nNo gates configured.\n"
    verdict = (
        "all gates passed"
        if report.passed
        else f"{len(report.failures)} of {len(report.results)} gates failed"
    )
    lines = [f"### Gates: {verdict}", ""]
    header = ["gate", "result", "observed", "threshold", "interval", "reason"]
    lines.extend(_table(header, [_gate_row(result) for result in report.results]))
    return "\n".join(lines) + "\n"


def render_markdown(
    summary: RunSummary, comparison: Comparison | None = None, gates: GateReport | None = None
) -> str:
    """The whole pull-request comment: headline, run table, comparison, gates."""
    if gates is None:
        headline = "Evaluation finished."
    else:
        headline = "✅ **Gates passed.**" if gates.passed else "❌ **Gates failed.**"
    parts = [f"## Evaluation: {md_cell(summary.suite)}\n\n{headline}\n", render_summary_markdown(summary)]
    if comparison is not None:
        parts.append(render_comparison_markdown(comparison))
    if gates is not None:
        parts.append(render_gates_markdown(gates))
    return "\n".join(parts)
