"""Kubernetes objects of one deployment, as plain mappings built from the ``DeploymentSpec``.

The gateway (Deployment, Service, PodDisruptionBudget) and, per model version, a replica Deployment
with probes, resources and a locked-down ``securityContext``, its Service, a NetworkPolicy letting
only the gateway (and Prometheus) reach it, a ServiceMonitor, and its autoscaler: an HPA on the
engine's custom metrics or a KEDA ``ScaledObject`` on Prometheus queries over the metric names the
replicas export (``llmops.serve.metrics``). Secrets are referenced by name, never written.
"""

from __future__ import annotations

import math
import re
from typing import Any

from llmops.deploy.processes import replica_args
from llmops.deploy.spec import DeploymentSpec, TransformersBackend
from llmops.deploy.target_settings import KubernetesSettings
from llmops.errors import InvalidInput
from llmops.serve.metrics import QUEUE_DEPTH_METRIC, RUNNING_METRIC

Obj = dict[str, Any]
UID = 10001  # the images' llmops user
HOME = "/var/lib/llmops"
ARTIFACTS = f"{HOME}/artifacts"
PART_OF = "llmops"


def kubernetes_settings(spec: DeploymentSpec) -> KubernetesSettings:
    """The spec's ``targets.kubernetes`` section, or an error naming what to add."""
    settings = spec.targets.kubernetes
    if settings is None:
        raise InvalidInput(
            "field 'targets.kubernetes': the kubernetes target needs this section "
            "(image, secret_name, artifacts_claim; see docs/deployment-targets.md)",
            param="targets.kubernetes",
        )
    if not isinstance(spec.backend, TransformersBackend):
        raise InvalidInput(
            f"field 'backend.kind': the kubernetes target runs the transformers backend, not "
            f"{spec.backend.kind}; run vLLM servers yourself and use kind openai with their URLs",
            param="backend.kind",
        )
    if (settings.memory_mb or spec.resources.memory_limit_mb) is None:
        raise InvalidInput(
            "field 'resources.memory_limit_mb': the kubernetes target needs a memory limit per replica; "
            "set it (or targets.kubernetes.memory_mb)",
            param="resources.memory_limit_mb",
        )
    return settings


def version_slug(model_version: str) -> str:
    """``support-bot@3`` → ``v3``: the suffix naming a version's objects."""
    version = model_version.rpartition("@")[2] or model_version
    slug = re.sub(r"[^a-z0-9-]+", "-", version.lower()).strip("-")
    return f"v{slug}" if slug[:1].isdigit() or not slug else slug


def replica_name(spec: DeploymentSpec, model_version: str) -> str:
    name = f"{spec.name}-{version_slug(model_version)}"
    if len(name) > 63:
        raise InvalidInput(f"field 'name': {name!r} is longer than 63 characters; shorten it", param="name")
    return name


def labels(spec: DeploymentSpec, component: str, **more: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/component": component,
        "llmops.dev/deployment": spec.name,
        **more,
    }


def _meta(name: str, object_labels: dict[str, str]) -> Obj:
    return {"name": name, "labels": object_labels}


def _env(settings: KubernetesSettings, *, gateway: bool) -> list[Obj]:
    keys = settings.secret_keys

    def ref(name: str, key: str, optional: bool = False) -> Obj:
        selector: Obj = {"name": settings.secret_name, "key": key}
        if optional:
            selector["optional"] = True
        return {"name": name, "valueFrom": {"secretKeyRef": selector}}

    env = [
        {"name": "LLMOPS_HOME", "value": HOME},
        {"name": "LLMOPS_ARTIFACTS", "value": ARTIFACTS},
        {"name": "OMP_NUM_THREADS", "value": "1"},
        ref("LLMOPS_DATABASE_URL", keys.database_url),
    ]
    if gateway:
        env.append(ref("LLMOPS_SECRET", keys.server_secret))
        if keys.redis_url:
            env.append(ref("LLMOPS_REDIS_URL", keys.redis_url, optional=True))
    return env


def _security() -> tuple[Obj, Obj]:
    pod = {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod, container


def _probe(path: str, period_s: float, timeout_s: float, failures: int) -> Obj:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": max(1, math.ceil(period_s)),
        "timeoutSeconds": max(1, math.ceil(timeout_s)),
        "failureThreshold": failures,
    }


def _pod_spec(containers: list[Obj], volumes: list[Obj], grace_s: float) -> Obj:
    pod_security, _ = _security()
    return {
        "automountServiceAccountToken": False,
        "securityContext": pod_security,
        "terminationGracePeriodSeconds": max(1, math.ceil(grace_s)),
        "containers": containers,
        "volumes": volumes,
    }


def _deployment(name: str, object_labels: dict[str, str], replicas: int, pod: Obj) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, object_labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": object_labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": object_labels}, "spec": pod},
        },
    }


def _service(name: str, object_labels: dict[str, str], port: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, object_labels),
        "spec": {
            "selector": object_labels,
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def gateway_objects(spec: DeploymentSpec) -> list[Obj]:
    """The gateway Deployment, its Service and PodDisruptionBudget."""
    settings = kubernetes_settings(spec)
    g = settings.gateway
    gateway_labels = {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/component": "gateway"}
    _, container_security = _security()
    memory = f"{g.memory_mb}Mi"
    container = {
        "name": "gateway",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": ["serve", "--host", "0.0.0.0", "--port", str(g.port)],
        "ports": [{"name": "http", "containerPort": g.port, "protocol": "TCP"}],
        "env": _env(settings, gateway=True),
        "resources": {
            "requests": {"cpu": g.cpu, "memory": memory},
            "limits": {"cpu": g.cpu, "memory": memory},
        },
        "readinessProbe": _probe("/readyz", 5, 2, 3),
        "livenessProbe": _probe("/healthz", 10, 2, 3),
        "securityContext": container_security,
        "volumeMounts": [{"name": "home", "mountPath": HOME}],
    }
    pod = _pod_spec([container], [{"name": "home", "emptyDir": {}}], 30)
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta("llmops-gateway", gateway_labels),
        "spec": {"minAvailable": g.min_available, "selector": {"matchLabels": gateway_labels}},
    }
    return [
        _deployment("llmops-gateway", gateway_labels, g.replicas, pod),
        _service("llmops-gateway", gateway_labels, g.port),
        pdb,
    ]


def replica_objects(spec: DeploymentSpec, model_version: str, *, track: str = "stable") -> list[Obj]:
    """One model version's replica Deployment, Service, NetworkPolicy and ServiceMonitor."""
    settings = kubernetes_settings(spec)
    name = replica_name(spec, model_version)
    object_labels = labels(spec, "replica", **{"llmops.dev/version": version_slug(model_version)})
    object_labels["llmops.dev/track"] = track
    memory = f"{settings.memory_mb or spec.resources.memory_limit_mb}Mi"
    cpu = str(spec.resources.threads)
    requests: Obj = {"cpu": cpu, "memory": memory}
    limits: Obj = {"cpu": cpu, "memory": memory}
    if spec.gpus_per_replica:
        # an extended resource: requested and limited alike, so the scheduler places the pod on a GPU node
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = spec.gpus_per_replica
    port = settings.replica_port
    startup_failures = max(1, math.ceil(spec.readiness.timeout_s / max(spec.readiness.interval_s, 1)))
    _, container_security = _security()
    container = {
        "name": "replica",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": replica_args(spec, model_version, "0.0.0.0", port),
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": _env(settings, gateway=False),
        "resources": {"requests": requests, "limits": limits},
        "startupProbe": _probe(spec.readiness.path, spec.readiness.interval_s, 2, startup_failures),
        "readinessProbe": _probe(spec.readiness.path, 5, spec.liveness.timeout_s, 2),
        "livenessProbe": _probe(
            spec.liveness.path,
            spec.liveness.interval_s,
            spec.liveness.timeout_s,
            spec.liveness.failure_threshold,
        ),
        # leave the Service before SIGTERM, as the local target deregisters before stopping
        "lifecycle": {"preStop": {"sleep": {"seconds": max(1, math.ceil(spec.drain.deregister_wait_s))}}},
        "securityContext": container_security,
        "volumeMounts": [
            {"name": "home", "mountPath": HOME},
            {"name": "artifacts", "mountPath": ARTIFACTS, "readOnly": True},
        ],
    }
    volumes = [
        {"name": "home", "emptyDir": {}},
        {
            "name": "artifacts",
            "persistentVolumeClaim": {"claimName": settings.artifacts_claim, "readOnly": True},
        },
    ]
    grace = spec.drain.deregister_wait_s + spec.drain.grace_s
    pod = _pod_spec([container], volumes, grace)
    return [
        _deployment(name, object_labels, spec.replicas.count, pod),
        _service(name, object_labels, port),
        _network_policy(spec, name, object_labels, port),
        _service_monitor(name, object_labels),
    ]


def _network_policy(spec: DeploymentSpec, name: str, object_labels: dict[str, str], port: int) -> Obj:
    """Only the gateway's pods (and Prometheus, scraping /metrics) reach the replicas."""
    settings = kubernetes_settings(spec)
    gateway = {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/component": "gateway"}
    prometheus = {
        "namespaceSelector": {
            "matchLabels": {"kubernetes.io/metadata.name": settings.autoscaling.prometheus_namespace}
        },
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name, object_labels),
        "spec": {
            "podSelector": {"matchLabels": object_labels},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": gateway}}, prometheus],
                    "ports": [{"protocol": "TCP", "port": port}],
                }
            ],
        },
    }


def _service_monitor(name: str, object_labels: dict[str, str]) -> Obj:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(name, object_labels),
        "spec": {
            "selector": {"matchLabels": object_labels},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
        },
    }


def load_queries(spec: DeploymentSpec, model_version: str) -> dict[str, str]:
    """Prometheus queries of one version's total load: requests queued and running in its engines
    (KEDA divides them by the replica count against an ``AverageValue`` target)."""
    settings = kubernetes_settings(spec)
    selector = f'namespace="{settings.namespace}",service="{replica_name(spec, model_version)}"'
    return {metric: f"sum({metric}{{{selector}}})" for metric in (QUEUE_DEPTH_METRIC, RUNNING_METRIC)}
