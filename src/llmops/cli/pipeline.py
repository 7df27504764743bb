"""`llmops pipeline`: run a declarative pipeline file, see what would run, draw it, export it to CI.

`pipeline run` exits 1 when a stage or a gate failed (so a CI job fails), 2 on a bad file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import typer

from llmops.cli.context import console, err_console, home_of
from llmops.pipelines import ci, dag, spec
from llmops.pipelines.stages import KINDS
from llmops.pipelines.stages.base import param_fields

app = typer.Typer(help="Pipelines: cached, declarative llmops.yaml files.", no_args_is_help=True)
DEFAULT_FILE = Path("llmops.yaml")
FILE_ARG = typer.Argument(DEFAULT_FILE, dir_okay=False, help="Pipeline file (default: ./llmops.yaml).")
PARAM_OPT = typer.Option([], "-p", "--param", help="Override: STAGE.PARAM=VALUE or PARAM=VALUE (repeatable).")


def _log(line: str) -> None:
    console.print(line, markup=False)


@app.command("run")
def run(
    ctx: typer.Context,
    file: Path = FILE_ARG,
    stage: list[str] = typer.Option(
        [], "--stage", help="Run only this stage and what it needs (repeatable)."
    ),
    force: list[str] = typer.Option([], "--force", help="Run this stage even if it is cached (repeatable)."),
    param: list[str] = PARAM_OPT,
    reports: Path = typer.Option(Path("reports"), help="Folder for pipeline.md and the gate summaries."),
    lease_seconds: float = typer.Option(
        30.0, min=1, help="Lease of the pipeline lock, renewed while running."
    ),
) -> None:
    """Run the stages in dependency order, skipping those whose inputs, parameters and code are unchanged."""
    from llmops.pipelines.runner import Runner

    pipeline = spec.load(file, param)
    runner = Runner(home_of(ctx), env=dict(os.environ), log=_log, reports_dir=reports, lease_s=lease_seconds)
    result = runner.run(pipeline, targets=stage, force=force)
    counts: dict[str, int] = {}
    for report in result.stages:
        counts[report.status] = counts.get(report.status, 0) + 1
    summary = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items())
    console.print(f"pipeline {pipeline.name}: {result.state} ({summary}); report: {reports / 'pipeline.md'}")
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command("status")
def status(
    ctx: typer.Context,
    file: Path = FILE_ARG,
    stage: list[str] = typer.Option([], "--stage", help="Only this stage and what it needs."),
    param: list[str] = PARAM_OPT,
) -> None:
    """What `run` would do now and why, stage by stage (runs nothing); and the last run's state."""
    from llmops.pipelines.lock import PIPELINE_MACHINE
    from llmops.pipelines.runner import Runner
    from llmops.store.lifecycle import Lifecycle

    home = home_of(ctx)
    pipeline = spec.load(file, param)
    for report in Runner(home, env=dict(os.environ)).status(pipeline, targets=stage):
        label = "up to date" if report.status == "up_to_date" else "would run"
        console.print(f"{report.name:<20} {label:<11} {report.reason}", markup=False)
    last = Lifecycle(home.store, PIPELINE_MACHINE).latest(pipeline.name)
    if last is not None:
        console.print(f"last run: {last.id[:12]} {last.state} at {last.updated_at:%Y-%m-%d %H:%M:%S} UTC")


@app.command("dag")
def show_dag(
    file: Path = FILE_ARG,
    mermaid: bool = typer.Option(False, "--mermaid", help="Print a Mermaid flowchart (for docs)."),
    param: list[str] = PARAM_OPT,
) -> None:
    """The stages and what each one reads from the others."""
    pipeline = spec.load(file, param)
    console.print(dag.mermaid(pipeline) if mermaid else dag.text(pipeline), markup=False)


@app.command("list")
def list_runs(
    ctx: typer.Context,
    name: str | None = typer.Option(None, "--name", help="Only runs of this pipeline."),
    limit: int = typer.Option(20, min=1, help="How many runs."),
) -> None:
    """Recent pipeline runs, newest first."""
    from llmops.pipelines.lock import PIPELINE_MACHINE
    from llmops.store.lifecycle import Lifecycle

    for run_record in Lifecycle(home_of(ctx).store, PIPELINE_MACHINE).recent(name, limit=limit):
        stages = run_record.data.get("stages") or {}
        counts: dict[str, int] = {}
        for item in stages.values():
            counts[item["status"]] = counts.get(item["status"], 0) + 1
        text = ", ".join(f"{n} {s}" for s, n in counts.items()) or "-"
        when = f"{run_record.created_at:%Y-%m-%d %H:%M:%S}"
        console.print(
            f"{run_record.id[:12]}  {run_record.name:<20} {run_record.state:<10} {when}  {text}", markup=False
        )


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Pipeline run id (a unique prefix is enough)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One pipeline run: its state, history, and each stage with why it ran or was skipped."""
    from llmops.pipelines.lock import PIPELINE_MACHINE
    from llmops.store.lifecycle import Lifecycle

    lifecycle = Lifecycle(home_of(ctx).store, PIPELINE_MACHINE)
    record = lifecycle.find(run_id)
    if as_json:
        console.print_json(
            json.dumps({"id": record.id, "name": record.name, "state": record.state, **record.data})
        )
        return
    console.print(f"pipeline {record.name} run {record.id} — {record.state}", markup=False)
    console.print(
        f"tracking run: {record.data.get('tracking_run', '-')}; file: {record.data.get('file', '-')}"
    )
    for item in (record.data.get("stages") or {}).values():
        outputs = ", ".join(f"{k}={v}" for k, v in item["outputs"].items() if v)
        console.print(
            f"  {item['name']:<18} {item['status']:<11} {item['reason']}"
            + (f"\n  {'':<18} → {outputs}" if outputs else "")
            + (f" (stage run {item['run_id'][:12]})" if item.get("run_id") else ""),
            markup=False,
        )
    for step in lifecycle.history(record.id):
        console.print(
            f"  {step.at:%H:%M:%S} {step.from_state or '-'} → {step.to_state}: {step.reason or ''}",
            markup=False,
        )


@app.command("export")
def export(
    file: Path = FILE_ARG,
    ci_kind: str = typer.Option(..., "--ci", help="github or gitlab."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Where to write it ('-': stdout)."),
    install: str = typer.Option(ci.DEFAULT_INSTALL, help="The command that installs the project in CI."),
    deploy: bool = typer.Option(
        False,
        "--deploy",
        help="CD: run the deploy stages too, on the default branch only, against the production store "
        "and gateway from CI secrets, on a self-hosted runner (default: stop before the deploy stages).",
    ),
) -> None:
    """Write a CI workflow that runs this pipeline, keeps the store cached and fails on a failed gate.

    By default the workflow runs every stage up to the deploy stages (`--stage` names the last
    ones before them); `--deploy` writes the CD workflow that runs the whole pipeline.
    """
    if ci_kind not in ("github", "gitlab"):
        err_console.print(f"error: --ci {ci_kind!r}: use github or gitlab")
        raise typer.Exit(2)
    kind: Literal["github", "gitlab"] = "github" if ci_kind == "github" else "gitlab"
    pipeline = spec.load(file)
    text = ci.export(kind, pipeline, root=Path.cwd(), install=install, deploy=deploy)
    if output is not None and str(output) == "-":
        console.print(text, markup=False, end="")
        return
    target = output or ci.default_path(kind, pipeline, deploy=deploy)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    console.print(f"wrote {target}")


@app.command("kinds")
def kinds() -> None:
    """Every stage kind, its outputs and its parameters (the file reference)."""
    for name, kind in sorted(KINDS.items()):
        why = kind.available()
        console.print(f"{name}: {kind.summary}" + (f" [unavailable: {why}]" if why else ""), markup=False)
        console.print(f"  outputs: {', '.join(kind.outputs) or 'declared by the stage'}", markup=False)
        for field, annotation, description in param_fields(kind.params):
            console.print(f"  - {field} ({annotation}): {description}", markup=False)
