"""`llmops serve`: run the gateway from gateway.yaml, with flags for the common cases.

With ``--model REF`` (the embedded shape) the config file's deployment of that name keeps all its
settings (guardrails, limits, price, drift reference); one it lacks is added, priced by the flags.
With ``--workers N`` (N > 1) uvicorn starts N processes; each reads the resolved configuration
from a file in the home that this command writes, 0600 and without credentials (``gateway_workers``;
limits and budgets should then use Redis).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import ValidationError

from llmops.cli.context import console, home_of, settings_of
from llmops.cli.gateway_workers import hand_to_workers, worker_config
from llmops.errors import InvalidInput, invalid_config
from llmops.gateway.config import GatewayConfig
from llmops.registry.references import parse_ref
from llmops.security.yaml_input import load_yaml


def _deployment_flag(value: str, price: dict[str, Any]) -> dict[str, Any]:
    name, sep, urls = value.partition("=")
    if not sep or not name or not urls:
        raise InvalidInput(f"--deployment {value!r}: use NAME=URL[,URL...]", param="deployment")
    return {"name": name, "upstreams": [{"url": u} for u in urls.split(",") if u], "price": price}


def _require_price(price: dict[str, Any], flag: str) -> None:
    """Models given by flags are priced by flags: say which to add, never assume zero."""
    if not price.get("free") and not price.get("usd_per_engine_second"):
        raise InvalidInput(
            f"{flag} needs a price: add --free to serve it at no cost, or --usd-per-engine-second RATE "
            "to charge keys for its engine time (budgets and cost reports count it; docs/gateway.md, Prices)",
            param="price",
        )


def _file_data(path: Path) -> dict[str, Any]:
    try:
        data = load_yaml(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read gateway config {path}: {exc}", param="config") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"gateway config {path} is not a mapping of settings", param="config")
    return data


def build_config(
    config: Path | None,
    deployments: list[str],
    overrides: dict[str, Any],
    price: dict[str, Any],
    model: str | None = None,
    env_redis_url: str | None = None,
) -> GatewayConfig:
    """The config file (if any), plus deployments and settings given as flags. With ``model`` (the
    embedded shape) the deployment it names keeps every setting the file gives it (guardrails,
    limits, price, drift reference...); one the file does not declare is added, priced by the flags.
    ``env_redis_url`` (LLMOPS_REDIS_URL) applies when neither the file nor a flag names Redis."""
    data = GatewayConfig().model_dump(mode="json")
    data.update(_file_data(config) if config else {})
    data["deployments"] = list(data.get("deployments") or [])
    if env_redis_url and not data.get("redis_url") and not overrides.get("redis_url"):
        overrides = {**overrides, "redis_url": env_redis_url}
    flagged = [_deployment_flag(value, price) for value in deployments]
    if flagged:
        _require_price(price, "--deployment " + " --deployment ".join(deployments))
    data["deployments"] += flagged
    data.update({k: v for k, v in overrides.items() if v is not None})
    if overrides.get("redis_url"):
        data["limits"] = {**(data.get("limits") or {}), "backend": "redis"}
    name = parse_ref(model).name if model else None
    if model and not any(isinstance(d, dict) and d.get("name") == name for d in data["deployments"]):
        _require_price(price, f"--model {model}")
        data["deployments"].append({"name": name, "model": model, "price": price})
    try:
        resolved = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        error = invalid_config(f"gateway config {config}" if config else "gateway config", exc.errors())
        raise InvalidInput(error.message, param=error.param) from None
    return _embed(resolved, model) if model else resolved


def _embed(config: GatewayConfig, ref: str) -> GatewayConfig:
    """``config`` with its deployment for ``ref`` serving ``ref`` in its first arm; an arm naming
    another model is an error, never silently replaced."""
    name = parse_ref(ref).name
    deployment = next(d for d in config.deployments if d.name == name)
    first = deployment.arms[0]
    if first.model not in (None, ref):
        raise InvalidInput(
            f"--model {ref}: the config's deployment {name!r} serves {first.model} in arm {first.name!r}; "
            f"set its model to {ref} or leave it out",
            param="model",
        )
    arms = [first.model_copy(update={"model": ref}), *deployment.arms[1:]]
    embedded = deployment.model_copy(update={"arms": arms})
    deployments = [embedded if d.name == name else d for d in config.deployments]
    return config.model_copy(update={"deployments": deployments})


def serve(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="gateway.yaml: every setting is described in docs/gateway.md.",
    ),
    deployment: list[str] = typer.Option([], "--deployment", "-d", help="NAME=URL[,URL...] (repeatable)."),
    host: str | None = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 4000)."),
    workers: int | None = typer.Option(None, help="Worker processes."),
    redis_url: str | None = typer.Option(None, help="Redis URL: shared limits and budgets across workers."),
    allow_loopback: bool | None = typer.Option(
        None, "--allow-loopback/--no-allow-loopback", help="Allow replicas on 127.0.0.1 (local replicas)."
    ),
    usd_per_engine_second: float | None = typer.Option(
        None, help="USD per engine second: the price of --deployment and --model models."
    ),
    free: bool = typer.Option(
        False, "--free", help="Serve --deployment and --model models at no cost, on purpose."
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Serve this registry reference in-process (the embedded shape; one worker).",
    ),
    threads: int | None = typer.Option(None, min=1, help="--model: torch threads of the in-process engine."),
    device: str | None = typer.Option(
        None, help="--model: where the in-process engine runs (auto, cpu, cuda, cuda:N; default auto)."
    ),
    dtype: str | None = typer.Option(
        None, help="--model: engine dtype (auto, float32, bfloat16, float16; auto is bfloat16 on CUDA)."
    ),
) -> None:
    """Run the gateway (OpenAI-compatible API with keys, limits, routing and logging).

    Settings: --config gateway.yaml, described in docs/gateway.md (a complete one: examples/gateway.yaml).

    The flags below override the file.
    """
    import uvicorn

    from llmops.gateway.http_server import server_options

    price: dict[str, Any] = {"free": free, "usd_per_engine_second": usd_per_engine_second or 0.0}
    overrides = {
        "host": host,
        "port": port,
        "workers": workers,
        "redis_url": redis_url,
        "allow_loopback_upstreams": allow_loopback,
    }
    settings = settings_of(ctx)
    resolved = build_config(config, deployment, overrides, price, model, settings.redis_url)
    home_of(ctx)  # create and migrate the embedded store before workers start
    if model is not None:
        engine = {"threads": threads, "device": device, "dtype": dtype}
        _serve_in_process(ctx, resolved, model, {k: v for k, v in engine.items() if v is not None})
        return
    names = ", ".join(d.name for d in resolved.deployments) or "no deployments yet"
    console.print(f"gateway on http://{resolved.host}:{resolved.port} serving {names}")
    console.print(f"dashboard on http://{resolved.host}:{resolved.port}/ui/ (log in with an API key)")
    if resolved.workers == 1:
        app = _app(resolved, ctx)
        uvicorn.run(app, host=resolved.host, port=resolved.port, log_level="warning", **server_options())
        return
    # Several workers: /metrics aggregates every worker through prometheus-client's multiprocess dir.
    from llmops.gateway.metrics import prepare_multiprocess_dir

    metrics_dir = prepare_multiprocess_dir(settings.resolved_home() / "prometheus-multiproc")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    resolved = resolved.model_copy(update={"metrics_multiprocess_dir": metrics_dir})
    hand_to_workers(resolved, settings.resolved_home())  # 0600, credentials through the environment
    os.environ["LLMOPS_HOME"] = str(settings.resolved_home())
    uvicorn.run(
        "llmops.cli.serve_gateway:worker_app",
        factory=True,
        host=resolved.host,
        port=resolved.port,
        workers=resolved.workers,
        log_level="warning",
        **server_options(),
    )


def _serve_in_process(
    ctx: typer.Context, config: GatewayConfig, ref: str, engine_options: dict[str, Any]
) -> None:
    """``llmops serve --model REF``: the engine, its replica app and the gateway in one process.

    ``config`` already holds the deployment for ``ref`` with every setting the file gave it
    (``build_config``); the in-process replica joins its first arm."""
    import uvicorn

    from llmops.dashboard import mount_dashboard
    from llmops.engine.config import EngineConfig
    from llmops.gateway.app import create_app
    from llmops.gateway.http_server import server_options
    from llmops.gateway.upstreams import AsgiUpstream
    from llmops.serve import ServeConfig
    from llmops.serve.replica import prepare_replica

    if config.workers != 1:
        raise InvalidInput(
            "--model runs in one process; drop --workers or serve replicas by URL", param="workers"
        )
    name = parse_ref(ref).name
    upstream_model = next(d for d in config.deployments if d.name == name).arms[0].upstream_model or name
    engine = EngineConfig(**engine_options) if engine_options else None
    if engine is not None:
        engine.placement()  # a device this machine lacks is refused before the model loads
    replica, _ = prepare_replica(
        ref, ServeConfig(served_model_name=upstream_model), engine=engine, open_store=lambda: home_of(ctx)
    )
    replica_name = f"in-process:{ref}"
    app = create_app(config, home_of(ctx), in_process={name: [AsgiUpstream(replica, replica_name)]})
    # The gateway's /metrics also shows the replica's engine gauges and request metrics.
    app.state.gateway.metrics.include(replica.state.service.metrics.registry, {"replica": replica_name})
    mount_dashboard(app)
    console.print(
        f"gateway on http://{config.host}:{config.port} serving {ref} in-process as deployment {name!r}"
    )
    console.print(f"dashboard on http://{config.host}:{config.port}/ui/ (log in with an API key)")
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", **server_options())


def _app(config: GatewayConfig, ctx: typer.Context) -> Any:
    from llmops.dashboard import mount_dashboard
    from llmops.gateway.app import create_app

    app = create_app(config, home_of(ctx))
    mount_dashboard(app)
    return app


def worker_app() -> Any:
    """The app of one worker process (uvicorn factory), from the file ``serve`` wrote."""
    from llmops.dashboard import mount_dashboard
    from llmops.gateway.app import create_app
    from llmops.store.home import open_home

    app = create_app(worker_config(), open_home())
    mount_dashboard(app)
    return app
