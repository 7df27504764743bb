"""The Ray cluster a deployment runs on: importing Ray (a one-line error naming the extra when it is
missing), connecting to ``targets.ray.address``, starting Serve's HTTP proxy, and refusing a spec the
cluster cannot place (a GPU request on a cluster without GPUs) before anything is deployed.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from llmops.deploy.spec import DeploymentSpec
from llmops.deploy.target_settings import RaySettings
from llmops.errors import InvalidInput, LLMOpsError, UpstreamError

INSTALL_HINT = "pip install 'llmops[ray]'"


def import_ray() -> tuple[ModuleType, ModuleType]:
    """``ray`` and ``ray.serve``, or a one-line error saying how to install them."""
    try:
        return importlib.import_module("ray"), importlib.import_module("ray.serve")
    except ImportError as exc:
        raise LLMOpsError(
            f"the ray target needs Ray Serve, which is not installed ({exc.name}); {INSTALL_HINT}",
            code="missing_extra",
        ) from None


def connect(settings: RaySettings) -> None:
    """Join the cluster at ``settings.address`` (once per process) and make sure Serve runs on it."""
    ray, serve = import_ray()
    if not ray.is_initialized():
        try:
            ray.init(
                address=settings.address,
                logging_level="WARNING",
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError) as exc:
            raise UpstreamError(
                f"no Ray cluster at targets.ray.address={settings.address!r} ({exc}); start one "
                "(`ray start --head`) or fix the address",
                code="ray_unreachable",
            ) from None
    serve.start(http_options={"host": settings.http_host, "port": settings.http_port})


def check_placeable(spec: DeploymentSpec) -> None:
    """Refuse what no node of the cluster can run: more GPUs or CPUs per replica than it has."""
    ray, _ = import_ray()
    total = ray.cluster_resources()
    gpus = int(total.get("GPU", 0))
    if spec.gpus_per_replica > gpus:
        raise InvalidInput(
            f"field 'resources.gpus': each replica asks for {spec.gpus_per_replica} GPU(s) but the Ray "
            f"cluster has {gpus}; set resources.gpus to 0 (and backend.engine.device to auto or cpu) or "
            "add GPU nodes",
            param="resources.gpus",
        )
    cpus = int(total.get("CPU", 0))
    if spec.resources.threads > cpus:
        raise InvalidInput(
            f"field 'resources.threads': each replica reserves {spec.resources.threads} CPU(s) but the "
            f"Ray cluster has {cpus}; lower resources.threads or add nodes",
            param="resources.threads",
        )
