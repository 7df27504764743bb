"""`llmops audit`: list, verify and export the hash-chained audit log."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from llmops.cli.context import console, err_console, home_of
from llmops.store import audit

app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


@app.command("list")
def list_events(
    ctx: typer.Context,
    target: str | None = typer.Option(None, help="Only events about this target, e.g. model:m@production."),
    action: str | None = typer.Option(None, help="Only this action, e.g. model.alias.set."),
    limit: int = typer.Option(100, min=1, help="At most this many events."),
) -> None:
    """List audit events, oldest first."""
    with home_of(ctx).store.read() as session:
        events = list(audit.iter_events(session, target=target, action=action, limit=limit))
    table = Table("seq", "time", "actor", "action", "target", "before", "after", "reason")
    for e in events:
        table.add_row(
            str(e.seq),
            e.ts.isoformat(timespec="seconds"),
            e.actor,
            e.action,
            e.target,
            json.dumps(e.before),
            json.dumps(e.after),
            e.reason or "",
        )
    console.print(table)


@app.command("verify")
def verify(ctx: typer.Context) -> None:
    """Check the whole chain; exit 1 if any event was edited, deleted or reordered."""
    with home_of(ctx).store.read() as session:
        report = audit.verify(session)
    if report.ok:
        console.print(f"audit chain ok: {report.events} events")
        return
    for problem in report.problems:
        err_console.print(f"tampered: {problem}", markup=False)
    raise typer.Exit(1)


@app.command("export")
def export(
    ctx: typer.Context,
    output: Path | None = typer.Option(None, "--output", "-o", help="Write JSONL here instead of stdout."),
) -> None:
    """Export every event as JSON lines (with hashes, so the export can be verified elsewhere)."""
    with home_of(ctx).store.read() as session:
        lines = [json.dumps(e.to_json(), sort_keys=True) for e in audit.iter_events(session)]
    text = "\n".join(lines) + ("\n" if lines else "")
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        console.print(f"wrote {len(lines)} events to {output}")
