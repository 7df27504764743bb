"""`llmops monitor`: drift checks over logged traffic, drift references, alerts, online-evaluation scores."""

from __future__ import annotations

from typing import Literal

import typer
from rich.table import Table

from llmops.cli.context import console, home_of, print_json
from llmops.data.versions import DatasetStore
from llmops.errors import InvalidInput
from llmops.monitor.alert_store import list_stored_alerts
from llmops.monitor.drift import DriftReport, compare
from llmops.monitor.drift_store import (
    profile_from_dataset,
    reference_profile,
    save_reference,
    save_report,
    window_from_log,
)
from llmops.monitor.model_refs import resolve_model_version
from llmops.monitor.online_eval_store import online_eval_summary
from llmops.monitor.request_search import parse_time

app = typer.Typer(help="Monitoring: drift, references, alerts, online evaluation.", no_args_is_help=True)


def _print_report(report: DriftReport) -> None:
    verdict = "DRIFTED" if report.drifted else "no drift"
    console.print(
        f"{report.model_version}: {verdict} ({report.window_samples} prompts vs a reference of "
        f"{report.reference_samples} from {report.reference_source or 'unknown'})",
        markup=False,
    )
    table = Table("feature", "method", "score", "threshold", "p-value", "drifted")
    for feature in report.features:
        p_value = "-" if feature.p_value is None else f"{feature.p_value:.4g}"
        table.add_row(
            feature.feature,
            feature.method,
            f"{feature.score:.4f}",
            f"{feature.threshold:g}",
            p_value,
            "yes" if feature.drifted else "no",
        )
    console.print(table)
    for name, why in report.skipped.items():
        console.print(f"skipped {name}: {why}", markup=False)


@app.command("drift")
def drift(
    ctx: typer.Context,
    version: str = typer.Option(
        ..., "--version", "-v", help="Model whose traffic is checked: name@N, name@alias or name."
    ),
    reference: str | None = typer.Option(
        None, "--reference", help="Dataset version (name@N) as the reference; default: the stored one."
    ),
    since: str = typer.Option("24h", "--since", help="Window start: ISO time or a span ago (30m, 2h, 7d)."),
    until: str | None = typer.Option(None, "--until", help="Window end (default now)."),
    limit: int = typer.Option(5000, "--limit", min=1, help="Newest prompts in the window at most."),
    save: bool = typer.Option(True, "--save/--no-save", help="Store the report (drift_reports)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Compare the prompts a version received (from the request log) with its reference.

    Exits 1 when the window has drifted, 0 when not, 2 on errors (e.g. too few prompts).
    """
    home = home_of(ctx)
    version = resolve_model_version(home.store, home.artifacts, version)
    if reference is not None:
        profile = profile_from_dataset(DatasetStore.from_home(home), reference)
    else:
        profile = reference_profile(home.store, home.artifacts, version)
    start = parse_time(since, param="since")
    end = parse_time(until, param="until") if until else None
    window = window_from_log(home.store, version, since=start, until=end, limit=limit)
    report = compare(profile, window, model_version=version)
    if save:
        save_report(home.store, report)
    if json_out:
        print_json(report.model_dump(mode="json"))
    else:
        _print_report(report)
    if report.drifted:
        raise typer.Exit(1)


@app.command("reference")
def reference(
    ctx: typer.Context,
    version: str = typer.Option(
        ..., "--version", "-v", help="Model the reference is for: name@N, name@alias or name."
    ),
    dataset: str = typer.Option(..., "--dataset", help="Dataset version (name@N) whose prompts it is."),
    reason: str | None = typer.Option(None, help="Why, for the audit log."),
) -> None:
    """Store a drift reference for a model version (running gateways pick it up within seconds)."""
    home = home_of(ctx)
    version = resolve_model_version(home.store, home.artifacts, version)
    profile = profile_from_dataset(DatasetStore.from_home(home), dataset)
    stored = save_reference(home.store, home.artifacts, version, profile, actor=home.actor, reason=reason)
    console.print(
        f"{version}: reference {stored.digest[:12]} from {stored.source} ({profile.samples} prompts)",
        markup=False,
    )


@app.command("alerts")
def alerts(
    ctx: typer.Context,
    status: str | None = typer.Option(None, "--status", help="firing or resolved (default both)."),
    rule: str | None = typer.Option(None, "--rule", help="Only this rule."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many, most recent first."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List alerts the serving processes raised: firing now and past ones."""
    if status not in (None, "firing", "resolved"):
        raise InvalidInput("--status must be firing or resolved", param="status")
    chosen: Literal["firing", "resolved"] | None = (
        "firing" if status == "firing" else "resolved" if status == "resolved" else None
    )
    records = list_stored_alerts(home_of(ctx).store, status=chosen, rule=rule, limit=limit)
    if json_out:
        print_json([record.model_dump(mode="json") for record in records])
        return
    table = Table("rule", "status", "labels", "condition", "value", "started", "resolved")
    for record in records:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(record.labels.items()) if k != "alertname")
        table.add_row(
            record.rule,
            record.status,
            labels or "-",
            f"{record.metric} {record.op} {record.threshold:g}",
            f"{record.value:.4g}",
            record.started_at.isoformat(timespec="seconds"),
            record.resolved_at.isoformat(timespec="seconds") if record.resolved_at else "-",
        )
    console.print(table)


@app.command("online-eval")
def online_eval(
    ctx: typer.Context,
    version: str | None = typer.Option(None, "--version", "-v", help="Only this model version."),
    since: str | None = typer.Option(None, "--since", help="Only scores since: ISO time or a span ago."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Online-evaluation scores of live traffic per model version and metric."""
    start = parse_time(since, param="since") if since else None
    home = home_of(ctx)
    if version is not None:
        version = resolve_model_version(home.store, home.artifacts, version)
    summary = online_eval_summary(home.store, model_version=version, since=start)
    if json_out:
        print_json([item.model_dump(mode="json") for item in summary])
        return
    table = Table("version", "metric", "scored", "mean", "errors")
    for item in summary:
        mean = "-" if item.mean is None else f"{item.mean:.3f}"
        table.add_row(item.model_version, item.metric, str(item.count), mean, str(item.errors))
    console.print(table)
