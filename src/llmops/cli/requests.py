"""`llmops requests`: search the gateway's request log, show one request, export to JSONL or Parquet."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from llmops.cli.context import console, home_of, print_json
from llmops.monitor.model_refs import resolve_model_version
from llmops.monitor.request_export import export_requests, format_of
from llmops.monitor.request_search import (
    FeedbackView,
    RequestFilter,
    RequestView,
    get_request,
    parse_time,
    search_requests,
)
from llmops.store.home import Home

app = typer.Typer(help="The gateway's request log: search, show, export.", no_args_is_help=True)

DEPLOYMENT = typer.Option(None, "--deployment", "-d", help="Deployment the request named.")
VERSION = typer.Option(
    None,
    "--version",
    "-v",
    help="Model that answered: name@N, name@alias or name (e.g. support-bot@production).",
)
SINCE = typer.Option(None, "--since", help="ISO time or a span ago: 30m, 2h, 7d.")
UNTIL = typer.Option(None, "--until", help="ISO time or a span ago.")
STATUS = typer.Option(None, "--status", min=100, max=599, help="HTTP status of the answer.")
USER = typer.Option(None, "--user", help="The request's `user` field.")
KEY = typer.Option(None, "--key", help="Id of the API key that sent it (key_...).")
TEXT = typer.Option(None, "--text", help="Case-insensitive text in the prompt or the completion.")


def _filter(
    home: Home,
    deployment: str | None,
    version: str | None,
    since: str | None,
    until: str | None,
    status: int | None,
    user: str | None,
    key: str | None,
    text: str | None,
    limit: int | None,
) -> RequestFilter:
    return RequestFilter(
        deployment=deployment,
        model_version=resolve_model_version(home.store, home.artifacts, version) if version else None,
        since=parse_time(since, param="since") if since else None,
        until=parse_time(until, param="until") if until else None,
        status=status,
        user=user,
        key_id=key,
        text=text,
        limit=limit,
    )


def _feedback_summary(items: list[FeedbackView]) -> str:
    if not items:
        return "-"
    up = sum(1 for item in items if item.thumbs == "up")
    down = sum(1 for item in items if item.thumbs == "down")
    scores = [item.score for item in items if item.score is not None]
    parts = [f"+{up}/-{down}"] if up or down else []
    parts += [f"score {sum(scores) / len(scores):.2f}"] if scores else []
    return " ".join(parts) or f"{len(items)} comment(s)"


def _excerpt(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _table(views: list[RequestView]) -> Table:
    table = Table("id", "time", "deployment", "version", "status", "ms", "tokens", "feedback", "prompt")
    for view in views:
        table.add_row(
            view.id,
            view.ts.isoformat(timespec="seconds"),
            view.deployment or "-",
            view.model_version or "-",
            str(view.status),
            f"{view.latency_ms:.0f}",
            f"{view.prompt_tokens}+{view.completion_tokens}",
            _feedback_summary(view.feedback),
            _excerpt(view.prompt),
        )
    return table


@app.command("search")
def search(
    ctx: typer.Context,
    deployment: str | None = DEPLOYMENT,
    version: str | None = VERSION,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    status: int | None = STATUS,
    user: str | None = USER,
    key: str | None = KEY,
    text: str | None = TEXT,
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many rows, newest first."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (with feedback)."),
) -> None:
    """Search the request log, newest first; each request with the feedback given on it."""
    home = home_of(ctx)
    request_filter = _filter(home, deployment, version, since, until, status, user, key, text, limit)
    views = search_requests(home.store, request_filter)
    if json_out:
        print_json([view.model_dump(mode="json") for view in views])
        return
    console.print(_table(views))


@app.command("show")
def show(
    ctx: typer.Context,
    request_id: str = typer.Argument(..., help="The request's id (its x-request-id header)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one request in full: prompt, completion, timings, feedback, online-evaluation scores."""
    detail = get_request(home_of(ctx).store, request_id)
    if json_out:
        print_json(detail.model_dump(mode="json"))
        return
    console.print(
        f"request {detail.id} at {detail.ts.isoformat()} — {detail.deployment or '-'} "
        f"({detail.model_version or '-'}, arm {detail.arm or '-'}, replica {detail.replica or '-'}): "
        f"status {detail.status}",
        markup=False,
    )
    table = Table("field", "value")
    for name, value in detail.timings.items():
        table.add_row(name, "not measured" if value is None else f"{value:,.1f}")
    for name in ("key_id", "user", "endpoint", "stream", "prompt_tokens", "completion_tokens", "cost_usd"):
        table.add_row(name, str(getattr(detail, name)))
    table.add_row("error", detail.error or "-")
    console.print(table)
    console.print("prompt:", detail.prompt or "(not logged)", markup=False)
    console.print("completion:", detail.completion or "(not logged)", markup=False)
    for item in detail.feedback:
        what = item.thumbs or (f"score {item.score:g}" if item.score is not None else "comment")
        console.print(f"feedback {item.id}: {what} {item.comment or ''}".rstrip(), markup=False)
        if item.corrected_output:
            console.print(f"  corrected: {item.corrected_output}", markup=False)
    for score in detail.online_eval:
        shown = "error: " + (score.error or "?") if score.value is None else f"{score.value:.3f}"
        console.print(f"online {score.metric}: {shown}", markup=False)


@app.command("export")
def export(
    ctx: typer.Context,
    out: Path = typer.Argument(..., help="File to write (*.jsonl or *.parquet)."),
    export_format: str | None = typer.Option(None, "--format", help="jsonl or parquet (default: by suffix)."),
    deployment: str | None = DEPLOYMENT,
    version: str | None = VERSION,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    status: int | None = STATUS,
    user: str | None = USER,
    key: str | None = KEY,
    text: str | None = TEXT,
) -> None:
    """Export every matching request (with its feedback) to JSON Lines or Parquet."""
    chosen = format_of(out, export_format)
    home = home_of(ctx)
    request_filter = _filter(home, deployment, version, since, until, status, user, key, text, None)
    count = export_requests(home.store, request_filter, out, chosen)
    console.print(f"wrote {count} requests to {out}", markup=False)
