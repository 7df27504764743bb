"""`llmops rollout`: start, watch, steer and audit progressive rollouts of a deployment.

`start` checks the candidate's deploy-time gates and, unless `--detach`, drives the rollout in the
foreground to its end. `controller` is the long-running mode: it drives every active rollout whose
lease is free (including ones a killed `start` or controller left behind). `promote`, `rollback` and
`abort` queue an operator signal, recorded with who and why, that the driving controller applies on
its next tick.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer
import yaml
from rich.table import Table

from llmops.cli.context import console, home_of, print_json
from llmops.deploy.policy import RolloutPolicy
from llmops.deploy.rollout import RolloutController, RolloutEnv
from llmops.deploy.rollout_state import ROLLOUT_MACHINE, RolloutData
from llmops.deploy.spec import load_spec
from llmops.deploy.supervisor import applied_spec
from llmops.deploy.targets import open_target
from llmops.deploy.traffic import current_weights
from llmops.errors import InvalidInput, NotFound
from llmops.registry.client import Registry
from llmops.security.yaml_input import load_yaml
from llmops.store.home import Home
from llmops.store.lifecycle import Lifecycle, LifecycleRecord

app = typer.Typer(
    help="Progressive rollouts: canary steps, analysis, promotion and rollback.", no_args_is_help=True
)
TARGET = typer.Option("local", "--target", help="Deploy target that starts candidate replicas.")
SETTLE = typer.Option(5.0, "--settle-s", min=0, help="Seconds gateway workers take to apply a split.")
LEASE = typer.Option(
    30.0,
    "--lease-s",
    min=1,
    help="Lease of a driven rollout, renewed every tick; a killed controller's rollout is taken over "
    "after it expires.",
)


def _controller(home: Home, target: str, settle_s: float, lease_s: float) -> RolloutController:
    env = RolloutEnv(
        home.store,
        Registry.from_home(home),
        open_target(target, home),
        lease_ttl_s=lease_s,
        settle_s=settle_s,
    )
    return RolloutController(env)


def _policy(path: Path | None) -> RolloutPolicy | None:
    if path is None:
        return None
    try:
        raw = load_yaml(path.read_text()) or {}
        return RolloutPolicy.model_validate(raw)
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise InvalidInput(f"rollout policy {path} is invalid: {exc}", param="policy") from None


def _latest(home: Home, deployment: str) -> LifecycleRecord:
    record = Lifecycle(home.store, ROLLOUT_MACHINE).latest(deployment)
    if record is None:
        raise NotFound(f"{deployment} has never been rolled out; start one with `llmops rollout start`")
    return record


def _describe(home: Home, record: LifecycleRecord) -> dict[str, object]:
    data = RolloutData.from_json(record.data)
    steps = data.rollout_policy().steps
    return {
        "run": record.id,
        "deployment": record.name,
        "state": record.state,
        "candidate": data.candidate.ref,
        "stable": data.stable.ref,
        "step": f"{data.step + 1}/{len(steps)} ({steps[data.step].weight:g}%)" if data.step >= 0 else None,
        "step_started_at": data.step_started_at,
        "weights": current_weights(home.store, record.name),
        "driven_by": record.lease_holder if record.lease_live() else None,
        "pending_signals": record.pending_signals,
        "last_analysis": (data.last_analysis or {}).get("analysis"),
    }


@app.command("start")
def start(
    ctx: typer.Context,
    deployment: str = typer.Argument(..., help="The deployment to roll out to."),
    candidate: str = typer.Option(..., "--candidate", help="Registry reference of the candidate (bot@4)."),
    spec_file: Path | None = typer.Option(
        None,
        "--spec",
        help="deployment.yaml to roll out with (its backend runs the candidate); default the spec "
        "`llmops deploy apply` applied, from the store.",
    ),
    policy_file: Path | None = typer.Option(
        None, "--policy", help="Rollout policy YAML (default the spec's)."
    ),
    reason: str | None = typer.Option(None, help="Why (recorded)."),
    detach: bool = typer.Option(False, help="Only record it; `llmops rollout controller` drives it."),
    target: str = TARGET,
    settle_s: float = SETTLE,
    lease_s: float = LEASE,
) -> None:
    """Check the candidate's gates and roll it out step by step (drives it unless --detach)."""
    home = home_of(ctx)
    spec = load_spec(spec_file) if spec_file else applied_spec(home, deployment)
    if spec.name != deployment:
        raise InvalidInput(f"{spec_file} describes {spec.name!r}, not {deployment!r}", param="spec")
    policy = _policy(policy_file)  # a bad file is refused before anything is touched
    controller = _controller(home, target, settle_s, lease_s)
    record = controller.start(spec, candidate, actor=home.actor, policy=policy, reason=reason)
    console.print(f"rollout {record.id[:12]}: {candidate} on {deployment}: gates passed")
    if detach:
        controller.runs.release(record.id, controller.env.holder)
        console.print("detached: `llmops rollout controller` drives it")
        return
    record = controller.drive(record.id)
    console.print(f"rollout {record.id[:12]}: {record.state}")
    if record.state != "promoted":
        raise typer.Exit(1)


@app.command("status")
def status(
    ctx: typer.Context,
    deployment: str = typer.Argument(..., help="Deployment name."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The latest rollout of a deployment: state, step, split, who drives it, last analysis."""
    home = home_of(ctx)
    view = _describe(home, _latest(home, deployment))
    if json_out:
        print_json(view)
        return
    for key, value in view.items():
        if key != "last_analysis":
            console.print(f"{key}: {value}", markup=False)
    analysis = view["last_analysis"]
    if isinstance(analysis, dict):
        table = Table("metric", "status", "candidate", "stable", "observed", "threshold")
        for name, m in analysis["metrics"].items():
            table.add_row(
                name,
                m["status"],
                *(
                    f"{m[k]:.4g}" if m[k] is not None else "-"
                    for k in ("candidate", "stable", "observed", "threshold")
                ),
            )
        console.print(table)


def _signal(ctx: typer.Context, deployment: str, name: str, reason: str | None) -> None:
    home = home_of(ctx)
    runs = Lifecycle(home.store, ROLLOUT_MACHINE)
    record = runs.live(deployment)
    if record is None:
        raise NotFound(f"{deployment} has no rollout in progress", param="deployment")
    runs.signal(record.id, name, actor=home.actor, reason=reason)
    driver = record.lease_holder if record.lease_live() else None
    where = (
        f"{driver} applies it on its next tick"
        if driver
        else "no controller drives it now: run `llmops rollout controller`"
    )
    console.print(f"{name} queued for rollout {record.id[:12]} ({record.state}); {where}", markup=False)


@app.command("promote")
def promote(
    ctx: typer.Context,
    deployment: str = typer.Argument(...),
    reason: str = typer.Option(..., help="Why (recorded)."),
) -> None:
    """Promote the candidate now, skipping the remaining steps."""
    _signal(ctx, deployment, "promote", reason)


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    deployment: str = typer.Argument(...),
    reason: str = typer.Option(..., help="Why (recorded)."),
) -> None:
    """Roll back to the stable version now."""
    _signal(ctx, deployment, "rollback", reason)


@app.command("abort")
def abort(
    ctx: typer.Context,
    deployment: str = typer.Argument(...),
    reason: str = typer.Option(..., help="Why (recorded)."),
) -> None:
    """Stop the rollout without judging the candidate; stable is restored."""
    _signal(ctx, deployment, "abort", reason)


@app.command("history")
def history(
    ctx: typer.Context,
    deployment: str = typer.Argument(...),
    run: str | None = typer.Option(None, help="A run id (prefix); default the latest rollout."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (with every number)."),
) -> None:
    """Every decision of a rollout with who, why and the numbers behind it."""
    home = home_of(ctx)
    runs = Lifecycle(home.store, ROLLOUT_MACHINE)
    record = runs.find(run) if run else _latest(home, deployment)
    transitions = runs.history(record.id)
    if json_out:
        print_json([t.__dict__ for t in transitions])
        return
    table = Table("at", "from", "to", "actor", "reason")
    for t in transitions:
        table.add_row(
            t.at.isoformat(timespec="seconds"), t.from_state or "-", t.to_state, t.actor, t.reason or ""
        )
    console.print(table)


@app.command("controller")
def controller(
    ctx: typer.Context,
    poll_s: float = typer.Option(1.0, "--poll-s", min=0.05, help="How often active rollouts are ticked."),
    target: str = TARGET,
    settle_s: float = SETTLE,
    lease_s: float = LEASE,
) -> None:
    """Drive every active rollout whose lease is free, until interrupted (SIGINT/SIGTERM)."""
    home = home_of(ctx)
    driver = _controller(home, target, settle_s, lease_s)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    console.print(f"rollout controller {driver.env.holder}: driving active rollouts every {poll_s:g} s")
    driver.serve(stop, poll_s=poll_s)
