"""`llmops deploy`: run deployments as local replica processes under a supervisor.

`apply FILE` hands the spec to the deployment's supervisor (starting one, detached, if none runs)
and waits until the replicas are ready and registered with the gateway, or prints what failed.
`supervise NAME` is the supervisor itself, in the foreground. `render FILE --target kubernetes -o DIR`
writes the deployment's Kubernetes manifests (a kustomize tree) without touching a cluster.
`--target ray` runs `apply`, `status`, `scale` and `delete` on Ray Serve instead (the `ray` extra).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import typer
from pydantic import SecretStr
from rich.table import Table

from llmops.cli.context import console, home_of, print_json, settings_of
from llmops.deploy.gateway_client import GatewayAdmin
from llmops.deploy.local import LocalTarget
from llmops.deploy.spec import load_spec
from llmops.deploy.supervisor import Supervisor
from llmops.deploy.target import AutoscaleStatus, DeploymentStatus, DeployTarget
from llmops.deploy.targets import TARGETS, open_target
from llmops.errors import InvalidInput
from llmops.registry.client import Registry

app = typer.Typer(
    help="Deployments: replica processes kept alive by a supervisor, registered with the gateway."
)

GATEWAY = typer.Option(None, "--gateway", help="Admin base URL of the gateway (default LLMOPS_GATEWAY_URL).")
KEY = typer.Option(
    None, "--gateway-key", help="Deployer API key of the gateway (default LLMOPS_GATEWAY_KEY)."
)
TARGET = typer.Option(
    "local", "--target", help="Where replicas run: local (supervised processes) or ray (Ray Serve)."
)


def _target(ctx: typer.Context, gateway: str | None, key: str | None) -> LocalTarget:
    settings = settings_of(ctx)
    secret = settings.gateway_key.get_secret_value() if settings.gateway_key else None
    return LocalTarget(home_of(ctx), gateway_url=gateway or settings.gateway_url, gateway_key=key or secret)


def _cluster_target(ctx: typer.Context, name: str, gateway: str | None, key: str | None) -> DeployTarget:
    """A target other than local, opened with the gateway address and key given on the command line."""
    if name not in TARGETS or name == "local":
        return open_target(name, home_of(ctx))  # the error lists the targets
    home = home_of(ctx)
    update: dict[str, Any] = {}
    if gateway:
        update["gateway_url"] = gateway
    if key:
        update["gateway_key"] = SecretStr(key)
    if update:
        home = dataclasses.replace(home, settings=home.settings.model_copy(update=update))
    return open_target(name, home)


def _print(status: DeploymentStatus) -> None:
    table = Table(title=f"{status.name} ({status.model}) supervisor: {status.supervisor or 'none'}")
    for column in (
        "replica",
        "track",
        "state",
        "version",
        "pid",
        "port",
        "uptime",
        "restarts",
        "live",
        "detail",
    ):
        table.add_column(column)
    for r in status.replicas:
        live = " ".join(f"{k}={v:g}" for k, v in sorted(r.metrics.items()))
        uptime = f"{r.uptime_s:.0f}s" if r.uptime_s is not None else "-"
        table.add_row(
            r.name, r.track, r.state.value, r.model_version, str(r.pid or "-"), str(r.port or "-"), uptime,
            str(r.restarts), live, r.detail or "",
        )  # fmt: skip
    console.print(table)
    if status.autoscaler is not None:
        console.print(_autoscaler_line(status.autoscaler), markup=False, highlight=False)


def _autoscaler_line(last: AutoscaleStatus) -> str:
    """``autoscaler: load above target, 1 -> 2 replicas since 12:00:01Z (running_per_replica=3.00 ...)``."""
    numbers = " ".join(f"{k}={v:.2f}" for k, v in sorted(last.numbers.items()) if k != "since_last_change_s")
    changed = f"; last change {last.last_change_at:%H:%M:%SZ}" if last.last_change_at else ""
    failed = f"; FAILED: {last.error}" if last.error else ""
    count = f"{last.current} -> {last.desired}" if last.desired != last.current else f"at {last.current}"
    since = f"{last.since:%H:%M:%SZ}"
    return f"autoscaler: {last.reason}, {count} replicas since {since} ({numbers}){changed}{failed}"


@app.command()
def apply(
    ctx: typer.Context,
    spec_file: Path = typer.Argument(..., help="deployment.yaml"),
    gateway: str | None = GATEWAY,
    gateway_key: str | None = KEY,
    foreground: bool = typer.Option(False, "--foreground", help="Supervise in this process (Ctrl-C stops)."),
    target_name: str = TARGET,
) -> None:
    """Make the deployment in SPEC_FILE true: replicas started, ready and registered."""
    spec = load_spec(spec_file)
    if target_name != "local":
        if foreground:
            raise InvalidInput(
                "--foreground supervises local replicas; drop it with --target", param="foreground"
            )
        _print(_cluster_target(ctx, target_name, gateway or spec.gateway.url, gateway_key).apply(spec))
        return
    target = _target(ctx, gateway or spec.gateway.url, gateway_key)
    client = _gateway(target)
    if client is not None:
        client.check()  # fail before anything starts, naming the address tried
        client.close()
    if foreground:
        run = target.lifecycle.live(spec.name) or target.lifecycle.create(
            spec.name, actor=target.home.actor, data={"spec": None}, reason="deploy apply"
        )
        target.lifecycle.signal(
            run.id,
            "apply",
            actor=target.home.actor,
            args={"spec": spec.model_dump(mode="json", exclude_unset=True)},
        )
        _supervise(ctx, spec.name, target)
        return
    _print(target.apply(spec))


@app.command()
def render(
    ctx: typer.Context,
    spec_file: Path = typer.Argument(..., help="deployment.yaml"),
    target: str = typer.Option("local", "--target", help="local, kubernetes or ray."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder of the kustomize tree (kubernetes)."),
    version: list[str] = typer.Option(
        [], "--version", help="Model version to render (NAME@N), or TRACK=NAME@N; default: resolve `model`."
    ),
) -> None:
    """Print (local) or write (kubernetes) what applying SPEC_FILE would run, without running it."""
    spec = load_spec(spec_file)
    if target != "kubernetes":
        console.print(open_target(target, home_of(ctx)).render(spec), markup=False, highlight=False)
        return
    from llmops.deploy.kubernetes.bundle import write_bundle

    if out is None:
        raise InvalidInput("--target kubernetes writes a folder; pass -o DIR", param="out")
    versions = {track or "stable": ref for track, _, ref in (v.rpartition("=") for v in version)}
    if not versions:
        versions = {"stable": Registry.from_home(home_of(ctx)).get(spec.model).ref}
    for path in write_bundle(spec, versions, out):
        console.print(str(path), markup=False, highlight=False)
    console.print(f"kubectl apply -k {out / 'overlays' / 'keda'}   (or overlays/hpa)", markup=False)


@app.command()
def status(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="Deployment (default: all running)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    target_name: str = TARGET,
) -> None:
    """State, version, pid, port, uptime, restarts and live /metrics numbers of every replica, and
    the autoscaler's last decision."""
    target: Any = (
        _target(ctx, None, None) if target_name == "local" else _cluster_target(ctx, target_name, None, None)
    )
    if name is None and not hasattr(target, "names"):
        raise InvalidInput(f"--target {target_name} needs the deployment NAME", param="name")
    names = [name] if name else target.names()
    statuses = [target.status(n, live_metrics=True) for n in names]
    if as_json:
        print_json([s for s in statuses])
        return
    if not statuses:
        console.print("no deployments; `llmops deploy apply deployment.yaml` starts one")
    for item in statuses:
        _print(item)


@app.command()
def scale(
    ctx: typer.Context,
    name: str,
    replicas: int = typer.Argument(..., min=0),
    track: str = typer.Option("stable", "--track"),
    gateway: str | None = GATEWAY,
    gateway_key: str | None = KEY,
    target_name: str = TARGET,
) -> None:
    """Run REPLICAS replicas of NAME (within the spec's replicas.min..max; on ray this pins the count
    until the next apply turns Serve's autoscaling back on)."""
    target = _target(ctx, gateway, gateway_key) if target_name == "local" else None
    _print(
        (target or _cluster_target(ctx, target_name, gateway, gateway_key)).scale(name, replicas, track=track)
    )


@app.command()
def restart(
    ctx: typer.Context, name: str, gateway: str | None = GATEWAY, gateway_key: str | None = KEY
) -> None:
    """Replace every replica of NAME, one at a time (a fresh one ready before the old one drains)."""
    _print(_target(ctx, gateway, gateway_key).restart(name))


@app.command()
def delete(
    ctx: typer.Context,
    name: str,
    track: str | None = typer.Option(None, "--track", help="Only this track (e.g. canary)."),
    gateway: str | None = GATEWAY,
    gateway_key: str | None = KEY,
    target_name: str = TARGET,
) -> None:
    """Drain and stop NAME's replicas and remove it from the gateway."""
    if target_name == "local":
        _target(ctx, gateway, gateway_key).delete(name, track=track)
    else:
        _cluster_target(ctx, target_name, gateway, gateway_key).delete(name, track=track)
    console.print(f"deleted {name}" + (f" track {track}" if track else ""))


@app.command()
def supervise(
    ctx: typer.Context, name: str, gateway: str | None = GATEWAY, gateway_key: str | None = KEY
) -> None:
    """Be NAME's supervisor in the foreground (what `apply` starts detached)."""
    _supervise(ctx, name, _target(ctx, gateway, gateway_key))


def _gateway(target: LocalTarget) -> GatewayAdmin | None:
    return GatewayAdmin(target.gateway_url, target.gateway_key) if target.gateway_url else None


def _supervise(ctx: typer.Context, name: str, target: LocalTarget) -> None:
    from llmops.deploy.local import supervisor_env

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    env = supervisor_env(target.home, target.gateway_url, target.gateway_key)
    Supervisor(target.home, name, _gateway(target), env).run()
