"""One model version of one track as a Ray Serve application: a deployment whose replicas each load
the model into the llmops engine and serve the replica app (``serve.app.build_app``), autoscaled by
Serve on requests in flight between ``replicas.min`` and ``replicas.max``, under a route prefix of
its own on Serve's HTTP proxy.

Names: application ``{deployment}-{track}-{version slug}`` (``support-bot-stable-support-bot-3``),
route prefix ``/{deployment}/{track}/{version slug}``. This module imports Ray; only the target
imports it, after ``cluster.import_ray``.
"""

from __future__ import annotations

import re
from typing import Any

from ray import serve
from ray.serve import Application

from llmops.deploy.spec import DeploymentSpec, TransformersBackend
from llmops.engine.config import EngineConfig
from llmops.errors import InvalidInput
from llmops.serve.config import ServeConfig


def version_slug(model_version: str) -> str:
    """``support-bot@3`` → ``support-bot-3`` (lower-case letters, digits and dashes)."""
    return re.sub(r"[^a-z0-9-]+", "-", model_version.lower()).strip("-")


def app_name(deployment: str, track: str, model_version: str) -> str:
    return f"{deployment}-{track}-{version_slug(model_version)}"


def route_prefix(deployment: str, track: str, model_version: str) -> str:
    return f"/{deployment}/{track}/{version_slug(model_version)}"


class LLMOpsReplica:
    """A Serve replica: loads ``model_version`` into the engine and serves the llmops replica app."""

    def __init__(self, model_version: str, serve_config: dict[str, Any], engine: dict[str, Any]) -> None:
        from llmops.serve.replica import prepare_replica

        self._app, _ = prepare_replica(
            model_version,
            ServeConfig.model_validate(serve_config),
            engine=EngineConfig.model_validate(engine),
        )

    def __serve_build_asgi_app__(self) -> Any:
        return self._app


def _replica_args(spec: DeploymentSpec, model_version: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    backend = spec.backend
    if not isinstance(backend, TransformersBackend):
        raise InvalidInput(
            f"field 'backend.kind': the ray target runs the transformers engine, not {backend.kind!r}; "
            "set backend.kind: transformers",
            param="backend.kind",
        )
    serve_config = ServeConfig(
        served_model_name=spec.served_model,
        max_n=backend.max_n,
        request_timeout_s=backend.request_timeout_s,
        log_level="warning",
    )
    engine = {**backend.engine.model_dump(exclude={"threads"}), "threads": spec.resources.threads}
    return model_version, serve_config.model_dump(mode="json"), engine


def ray_actor_options(spec: DeploymentSpec, env: dict[str, str]) -> dict[str, Any]:
    """What each Serve replica reserves (its threads, the GPUs its engine device needs) and its env."""
    env_vars = {**env, "OMP_NUM_THREADS": str(spec.resources.threads)}
    return {
        "num_cpus": spec.resources.threads,
        "num_gpus": spec.gpus_per_replica,
        "runtime_env": {"env_vars": env_vars},
    }


def autoscaling_config(spec: DeploymentSpec, initial: int) -> dict[str, Any]:
    """Serve's ``autoscaling_config``: replicas.min..max, starting at ``initial``."""
    scaling = spec.targets.ray.autoscaling
    return {
        "min_replicas": spec.replicas.min,
        "initial_replicas": initial,
        "max_replicas": spec.replicas.max,
        "target_ongoing_requests": scaling.target_ongoing_requests,
        "upscale_delay_s": scaling.upscale_delay_s,
        "downscale_delay_s": scaling.downscale_delay_s,
        "metrics_interval_s": scaling.metrics_interval_s,
        "look_back_period_s": scaling.look_back_period_s,
    }


def build_application(
    spec: DeploymentSpec,
    model_version: str,
    *,
    replicas: int,
    pinned: bool,
    env: dict[str, str],
) -> Application:
    """The Serve application of ``model_version``: autoscaled from ``replicas``, or ``pinned`` to it."""
    scaling: dict[str, Any] = (
        {"num_replicas": replicas} if pinned else {"autoscaling_config": autoscaling_config(spec, replicas)}
    )
    deployment: Any = serve.deployment(
        serve.ingress()(LLMOpsReplica),
        name=spec.name,
        max_ongoing_requests=spec.targets.ray.autoscaling.max_ongoing_requests,
        health_check_period_s=spec.liveness.interval_s,
        health_check_timeout_s=spec.liveness.timeout_s * spec.liveness.failure_threshold,
        graceful_shutdown_timeout_s=spec.drain.grace_s,
        # every imperative deploy is a new code version to Serve, so `scale` and a re-apply replace
        # the replicas: new ones start and become ready before the old ones stop
        max_surge_percent=100,
        ray_actor_options=ray_actor_options(spec, env),
        **scaling,
    )
    return deployment.bind(*_replica_args(spec, model_version))
