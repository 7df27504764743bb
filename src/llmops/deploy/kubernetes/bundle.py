"""A deployment rendered as a kustomize tree (``llmops deploy render --target kubernetes -o DIR``)::

    DIR/base/kustomization.yaml      gateway.yaml and one file per model version
    DIR/base/gateway.yaml            gateway Deployment, Service, PodDisruptionBudget
    DIR/base/NAME-vN.yaml            replica Deployment, Service, NetworkPolicy, ServiceMonitor
    DIR/overlays/keda/               namespace + KEDA ScaledObjects (needs KEDA and Prometheus)
    DIR/overlays/hpa/                namespace + HPAs on custom metrics (needs the Prometheus adapter)

``kubectl apply -k DIR/overlays/keda`` deploys it. Files are YAML dumps of the objects
``manifests`` builds (never string templates); ``llmops deploy render`` refuses a spec that cannot
render, naming the field.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from llmops.deploy.kubernetes.autoscalers import horizontal_pod_autoscaler, scaled_object
from llmops.deploy.kubernetes.manifests import (
    Obj,
    gateway_objects,
    kubernetes_settings,
    replica_name,
    replica_objects,
)
from llmops.deploy.spec import DeploymentSpec
from llmops.errors import InvalidInput

KUSTOMIZATION = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
OVERLAYS: dict[str, Callable[[DeploymentSpec, str], Obj]] = {
    "keda": scaled_object,
    "hpa": horizontal_pod_autoscaler,
}


def dump(objects: list[Obj]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)


def objects(spec: DeploymentSpec, versions: dict[str, str], *, autoscaler: str = "keda") -> list[Obj]:
    """Every object of the deployment with its namespace set: what the ``autoscaler`` overlay builds.
    ``versions`` maps a track (stable, canary) to the model version it runs."""
    settings = kubernetes_settings(spec)
    found = gateway_objects(spec)
    for track, version in versions.items():
        found += replica_objects(spec, version, track=track)
        found.append(OVERLAYS[autoscaler](spec, version))
    for item in found:
        item["metadata"]["namespace"] = settings.namespace
    return found


def write_bundle(spec: DeploymentSpec, versions: dict[str, str], out: Path) -> list[Path]:
    """Write the kustomize base and overlays under ``out``; returns the files written."""
    settings = kubernetes_settings(spec)
    if not versions:
        raise InvalidInput("no model version to render; pass --version NAME@N", param="version")
    base = out / "base"
    written: dict[Path, str] = {base / "gateway.yaml": dump(gateway_objects(spec))}
    for track, version in versions.items():
        written[base / f"{replica_name(spec, version)}.yaml"] = dump(
            replica_objects(spec, version, track=track)
        )
    resources = [path.name for path in written]
    written[base / "kustomization.yaml"] = yaml.safe_dump({**KUSTOMIZATION, "resources": resources})
    for overlay, build in OVERLAYS.items():
        folder = out / "overlays" / overlay
        written[folder / f"{overlay}.yaml"] = dump([build(spec, v) for v in versions.values()])
        kustomization = {
            **KUSTOMIZATION,
            "namespace": settings.namespace,
            "resources": ["../../base", f"{overlay}.yaml"],
        }
        written[folder / "kustomization.yaml"] = yaml.safe_dump(kustomization, sort_keys=False)
    for path, text in written.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(written)


def kustomize_build(folder: Path, timeout_s: float = 60) -> list[Obj]:
    """``kubectl kustomize FOLDER``: the objects an overlay (or the base) builds."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise InvalidInput(
            "kubectl is not installed; install it to build the kustomize tree", param="kubectl"
        )
    result = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if result.returncode != 0:
        raise InvalidInput(f"kubectl kustomize {folder} failed: {result.stderr.strip()}", param="kustomize")
    return [item for item in yaml.safe_load_all(result.stdout) if item]
