"""A self-contained HTML report of a run: metric tables, inline SVG plots, comparison and gates.

Prompts, predictions, references, model names and error reasons are untrusted, so every piece of
text goes through ``html.escape``; the page also carries a Content-Security-Policy that allows no
script at all, as a second line of defence. Plots are drawn by ``svg_plots`` (no plotting library).
"""

from __future__ import annotations

from html import escape

from llmops.evals.confusion import LABEL_KINDS, confusion_matrix
from llmops.evals.gates import GateReport
from llmops.evals.report import (
    direction_text,
    format_interval,
    format_number,
    format_p_value,
    verdict_text,
)
from llmops.evals.results import Comparison, ExampleOutcome, MetricSummary, RunResults, RunSummary
from llmops.evals.svg_plots import confusion_svg, histogram_svg, scatter_svg

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.text { max-width: 28rem; white-space: pre-wrap; word-break: break-word; font-size: 0.85rem; }
.pass { color: #1a7f37; font-weight: 600; } .fail { color: #cf222e; font-weight: 600; }
.better { color: #1a7f37; } .worse { color: #cf222e; }
.plots { display: flex; gap: 1rem; flex-wrap: wrap; }
"""
_TEXT_LIMIT = 500


def _e(text: str) -> str:
    return escape(text, quote=True)


def _clip(text: str | None) -> str:
    if text is None:
        return "—"
    return _e(text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT] + " …")


def _table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table. Each cell is already-escaped HTML content, or a whole ``<td ...>`` element
    when it needs a class (escaped text can never start with ``<td``)."""
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary_table(summary: RunSummary) -> str:
    rows = [
        [
            _e(m.info.metric_id),
            _e(direction_text(m.info.higher_is_better)),
            format_number(m.score),
            format_interval(m.interval),
            str(m.n),
            f"{m.n_errors}" + (f": {_clip(m.first_error)}" if m.first_error else ""),
        ]
        for m in summary.metrics
    ]
    return _table(["metric", "direction", "score", "CI", "n", "errors"], rows)


def _worst_examples(results: RunResults, metric: MetricSummary, limit: int) -> list[ExampleOutcome]:
    metric_id = metric.info.metric_id
    scored = [
        o for o in results.outcomes if (r := o.scores.get(metric_id)) is not None and r.value is not None
    ]
    scored.sort(key=lambda o: o.scores[metric_id].value or 0.0, reverse=not metric.info.higher_is_better)
    errored = [o for o in results.outcomes if (r := o.scores.get(metric_id)) is None or r.value is None]
    return errored[:limit] + scored[: max(0, limit - len(errored[:limit]))]


def _examples_table(examples: list[ExampleOutcome], metric_id: str) -> str:
    rows = []
    for outcome in examples:
        result = outcome.scores.get(metric_id)
        score = format_number(result.value) if result and result.value is not None else "error"
        note = result.error if result and result.error else ""
        if result and result.judge and result.judge.reason:
            note = result.judge.reason
        rows.append(
            [
                _e(outcome.example_id),
                score,
                f'<td class="text">{_clip(outcome.prompt)}</td>',
                f'<td class="text">{_clip(outcome.prediction)}</td>',
                f'<td class="text">{_clip(outcome.reference)}</td>',
                f'<td class="text">{_clip(note)}</td>',
            ]
        )
    return _table(["example", "score", "prompt", "prediction", "reference", "note"], rows)


def _metric_section(results: RunResults, metric: MetricSummary, examples: int) -> str:
    metric_id = metric.info.metric_id
    pairs = [
        (len(o.prediction), r.value)
        for o in results.outcomes
        if (r := o.scores.get(metric_id)) is not None and r.value is not None
    ]
    values = [value for _, value in pairs]
    plots = [
        histogram_svg(values, title=f"{metric_id}: score distribution", x_label=metric_id),
        scatter_svg(
            [float(length) for length, _ in pairs],
            values,
            title=f"{metric_id}: length vs score",
            x_label="prediction length (characters)",
            y_label=metric_id,
        ),
    ]
    if metric.info.kind in LABEL_KINDS:
        matrix = confusion_matrix(results, metric_id)
        if matrix is not None:
            plots.append(confusion_svg(matrix.labels, matrix.counts, title=f"{metric_id}: confusion matrix"))
    worst = _worst_examples(results, metric, examples)
    return (
        f"<section><h3>{_e(metric_id)}</h3>"
        f'<div class="plots">{"".join(plots)}</div>'
        f"<h4>Worst and errored examples</h4>{_examples_table(worst, metric_id)}</section>"
    )


def _comparison_section(comparison: Comparison) -> str:
    rows = [
        [
            _e(m.info.metric_id),
            format_number(m.candidate),
            format_number(m.baseline),
            format_number(m.difference, signed=True),
            format_interval(m.interval, signed=True),
            format_p_value(m.p_value),
            _e(m.test.replace("_", " ")),
            str(m.n_pairs),
            f'<td class="{_e(m.verdict or "")}">{_e(verdict_text(m))}</td>',
        ]
        for m in comparison.metrics
    ]
    header = ["metric", "candidate", "baseline", "Δ", "CI of Δ", "p", "test", "n", "verdict"]
    return (
        f"<h2>{_e(comparison.candidate)} vs {_e(comparison.baseline)}</h2>"
        f"<p>{comparison.n_paired_examples} paired examples, "
        f"{comparison.n_unpaired_examples} unpaired.</p>{_table(header, rows)}"
    )


def _gates_section(gates: GateReport) -> str:
    rows = [
        [
            _e(g.name),
            f'<td class="{"pass" if g.passed else "fail"}">{"pass" if g.passed else "fail"}</td>',
            format_number(g.observed),
            format_number(g.threshold),
            format_interval(g.interval),
            f'<td class="text">{_clip(g.reason)}</td>',
        ]
        for g in gates.results
    ]
    status = "all gates passed" if gates.passed else f"{len(gates.failures)} gate(s) failed"
    return f"<h2>Gates: {_e(status)}</h2>" + _table(
        ["gate", "result", "observed", "threshold", "interval", "reason"], rows
    )


def render_html(
    summary: RunSummary,
    results: RunResults | None = None,
    comparison: Comparison | None = None,
    gates: GateReport | None = None,
    *,
    examples_per_metric: int = 5,
) -> str:
    """The whole report as one HTML document; ``results`` adds plots and example tables."""
    title = f"Evaluation: {summary.suite} — {summary.model}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p>{summary.n_examples} examples.</p>",
        "<h2>Metrics</h2>",
        _summary_table(summary),
    ]
    if results is not None:
        parts.extend(_metric_section(results, metric, examples_per_metric) for metric in summary.metrics)
    if comparison is not None:
        parts.append(_comparison_section(comparison))
    if gates is not None:
        parts.append(_gates_section(gates))
    parts.append("</body></html>")
    return "\n".join(parts)
