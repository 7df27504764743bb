"""`llmops loop`: the maintenance loop of one deployment, configured by loop.yaml.

`run` is the long-running service (triggers checked every `interval`, at most one cycle at a time);
`once` does one round now (for CI and demos; `--force` starts a cycle without a trigger); `status`
shows each trigger's last check against its cooldown and budget; `history` lists the cycles with
their trigger, datasets, training run, gate, rollout and before/after scores.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from llmops.cli.context import console, home_of, print_json
from llmops.loop.service import CycleSummary, open_service

app = typer.Typer(
    help="The maintenance loop: triggers, curation, retrain, gate, rollout.", no_args_is_help=True
)
CONFIG = typer.Option(Path("loop.yaml"), "--config", "-c", help="The loop's configuration file.")
JSON = typer.Option(False, "--json", help="Print JSON (with every number).")


@app.command("run")
def run(
    ctx: typer.Context,
    config: Path = CONFIG,
    max_rounds: int | None = typer.Option(None, "--max-rounds", min=1, help="Stop after this many rounds."),
) -> None:
    """Check triggers every interval and run the cycles they start, until interrupted (SIGINT/SIGTERM)."""
    service = open_service(home_of(ctx), config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    console.print(f"loop {service.config.loop_name}: watching {service.config.deployment} every "
                  f"{service.config.interval:g} s")  # fmt: skip
    cycles = service.run(stop, max_rounds=max_rounds)
    console.print(f"loop {service.config.loop_name}: stopped after {cycles} cycle(s)")


@app.command("once")
def once(
    ctx: typer.Context,
    config: Path = CONFIG,
    force: bool = typer.Option(False, "--force", help="Start a cycle even if no trigger fires."),
    json_out: bool = JSON,
) -> None:
    """One round now: resume a cut-off cycle, or start one if a trigger fires (exit 1 if it failed)."""
    service = open_service(home_of(ctx), config)
    result = service.once(force=force)
    if json_out:
        summary = service.history(limit=1)[0] if result.cycle else None
        print_json({"note": result.note, "checks": [c.firing.to_json() for c in result.checks],
                    "cycle": None if summary is None else _summary_json(summary)})  # fmt: skip
    else:
        for check in result.checks:
            mark = "fired" if check.firing.fired else "quiet"
            limit = "" if check.allowance.allowed else f" [{check.allowance.reason}]"
            console.print(f"{check.firing.trigger}: {mark}: {check.firing.reason}{limit}")
        if result.note:
            console.print(result.note)
        if result.cycle is not None:
            _print_cycle(service.history(limit=1)[0])
    if result.cycle is not None and result.cycle.state == "failed":
        raise typer.Exit(1)


@app.command("status")
def status(ctx: typer.Context, config: Path = CONFIG, json_out: bool = JSON) -> None:
    """The champion, a live cycle (if any) and each trigger against its cooldown and budget."""
    service = open_service(home_of(ctx), config, with_rollout=False)
    state = service.status()
    if json_out:
        print_json(state)
        return
    live = state["live_cycle"]
    running = f"cycle {live['id'][:12]} {live['state']}" if live else "no cycle running"
    console.print(f"loop {state['loop']} on {state['deployment']}: champion {state['champion']}; {running}")
    table = Table("trigger", "fired", "allowed", "today", "why", "limit")
    for t in state["triggers"]:
        table.add_row(t["name"], str(t["fired"]), str(t["allowed"]), f"{t['used_today']}/{t['budget']}",
                      t["reason"], t["limit"])  # fmt: skip
    console.print(table)


@app.command("history")
def history(
    ctx: typer.Context,
    config: Path = CONFIG,
    limit: int = typer.Option(20, min=1, help="At most this many cycles, newest first."),
    json_out: bool = JSON,
) -> None:
    """Each cycle: trigger, dataset, run, gate, rollout outcome and before/after scores."""
    service = open_service(home_of(ctx), config, with_rollout=False)
    cycles = service.history(limit=limit)
    if json_out:
        print_json([_summary_json(c) for c in cycles])
        return
    table = Table("cycle", "started", "trigger", "state", "dataset", "candidate", "gate", "fresh", "original")
    for c in cycles:
        scores = c.scores()
        gated = [t for t in c.transitions if t.to_state in ("gated", "rejected")]
        gate = ("passed" if gated[-1].numbers.get("passed") else "failed") if gated else "-"
        table.add_row(
            c.id[:12],
            c.created_at.isoformat(timespec="seconds"),
            c.trigger,
            c.state,
            str(c.data.get("train_dataset", "-")),
            str(c.data.get("candidate", "-")),
            gate,
            _before_after(scores.get("fresh")),
            _before_after(scores.get("original")),
        )
    console.print(table)


def _before_after(score: dict[str, Any] | None) -> str:
    if not score or score.get("champion") is None:
        return "-"
    interval = f" [{score['low']:+.3f}, {score['high']:+.3f}]" if score.get("low") is not None else ""
    return f"{score['champion']:.3f} -> {score['candidate']:.3f}{interval}"


def _summary_json(summary: CycleSummary) -> dict[str, Any]:
    return {
        "id": summary.id,
        "state": summary.state,
        "created_at": summary.created_at,
        "trigger": summary.trigger,
        "trigger_reason": summary.trigger_reason,
        "data": summary.data,
        "scores": summary.scores(),
        "transitions": [t.__dict__ for t in summary.transitions],
    }


def _print_cycle(summary: CycleSummary) -> None:
    console.print(f"cycle {summary.id[:12]} ({summary.trigger}): {summary.state}")
    for t in summary.transitions:
        console.print(f"  {t.to_state}: {t.reason or ''}")
