"""`llmops eval`: run a suite on a model version, compare two versions, render reports.

`eval run` exits 1 when a gate fails, so a CI job can block a release on it.
"""

from __future__ import annotations

import html as html_module
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from llmops.cli.context import console, home_of

if TYPE_CHECKING:
    from llmops.evals.runner import EvalRunner
from llmops.evals.report import render_markdown
from llmops.evals.report_html import render_html

app = typer.Typer(help="Evaluation: suites, comparisons, gates, reports.", no_args_is_help=True)


def _show(markdown: str) -> None:
    """The markdown report on the terminal: its HTML entities (kept for rendered markdown) unescaped."""
    console.print(html_module.unescape(markdown), markup=False)


def _runner(ctx: typer.Context) -> EvalRunner:
    from llmops.evals.runner import EvalRunner  # imports torch: only for the commands that evaluate

    # The CLI is the one place that hands the environment to metrics (judge API keys).
    return EvalRunner(home_of(ctx), env=dict(os.environ))


@app.command("run")
def run(
    ctx: typer.Context,
    suite: Path = typer.Argument(..., exists=True, dir_okay=False, help="Suite YAML file."),
    model: str = typer.Option(..., "--model", help="Model reference: name, name@VERSION or name@ALIAS."),
    limit: int | None = typer.Option(None, min=1, help="Evaluate only the first N examples."),
    html: Path | None = typer.Option(None, help="Also write an HTML report here."),
    markdown: Path | None = typer.Option(None, help="Also write the markdown report here."),
) -> None:
    """Evaluate MODEL on SUITE, store the run, apply the gates (exit 1 when one fails)."""
    result = _runner(ctx).run(suite, model, limit=limit)
    text = render_markdown(result.summary, None, result.gates)
    _show(text)
    console.print(f"run: {result.run_id}")
    if markdown is not None:
        markdown.write_text(text)
    if html is not None:
        html.write_text(render_html(result.summary, result.results, None, result.gates))
    if result.gates is not None and not result.gates.passed:
        raise typer.Exit(1)


@app.command("compare")
def compare(
    ctx: typer.Context,
    candidate: str = typer.Option(..., help="Candidate model reference."),
    baseline: str = typer.Option(..., help="Baseline model reference."),
    suite: Path = typer.Option(..., exists=True, dir_okay=False, help="Suite YAML file."),
    limit: int | None = typer.Option(None, min=1, help="Evaluate only the first N examples."),
    markdown: Path | None = typer.Option(None, help="Also write the markdown report here."),
) -> None:
    """Paired comparison of CANDIDATE against BASELINE with intervals and a verdict per metric."""
    comparison, cand, _base = _runner(ctx).compare(suite, candidate, baseline, limit)
    text = render_markdown(cand.summary, comparison, None)
    _show(text)
    if markdown is not None:
        markdown.write_text(text)


@app.command("report")
def report(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Evaluation run id (a unique prefix is enough)."),
    html: Path | None = typer.Option(None, help="Write an HTML report here instead of markdown to stdout."),
) -> None:
    """Render a stored evaluation run, with its gates, as markdown (stdout) or HTML."""
    result = _runner(ctx).load(run_id)
    if html is not None:
        html.write_text(render_html(result.summary, result.results, None, result.gates))
        console.print(f"wrote {html}")
        return
    _show(render_markdown(result.summary, None, result.gates))
