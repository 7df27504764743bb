"""`llmops runs`: list and show tracking runs."""

from __future__ import annotations

import typer
from rich.table import Table

from llmops.cli.context import console, home_of, print_json
from llmops.tracking import Tracker

app = typer.Typer(help="Tracking runs: experiments, params, metrics.", no_args_is_help=True)


@app.command("list")
def list_runs(
    ctx: typer.Context,
    experiment: str | None = typer.Option(None, help="Only runs of this experiment."),
    limit: int = typer.Option(50, min=1, help="At most this many runs, newest first."),
) -> None:
    """List runs, newest first."""
    runs = Tracker.from_home(home_of(ctx)).list_runs(experiment, limit)
    table = Table("id", "experiment", "name", "status", "started")
    for run in runs:
        table.add_row(
            run.id[:12], run.experiment, run.name, run.status, run.started_at.isoformat(timespec="seconds")
        )
    console.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Run id (a unique prefix is enough)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a run: status, params, latest metrics, artifacts."""
    run = Tracker.from_home(home_of(ctx)).get_run(run_id)
    if json_out:
        print_json(run)
        return
    console.print(f"run {run.id} ({run.name}) in {run.experiment}: {run.status}")
    if run.error:
        console.print(f"error: {run.error}", markup=False)
    for title, values in (
        ("params", run.params),
        ("metrics", run.latest_metrics),
        ("artifacts", run.artifacts),
    ):
        if values:
            table = Table("key", "value", title=title)
            for key, value in sorted(values.items()):
                table.add_row(key, str(value))
            console.print(table)
