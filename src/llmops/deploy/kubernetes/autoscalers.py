"""Autoscaling a replica Deployment on the engine's load: a KEDA ``ScaledObject`` over Prometheus
queries, or an HPA (``autoscaling/v2``) on the same metrics served as custom metrics (by the
Prometheus adapter). A Deployment gets one of them, never both (they would fight): each is an overlay.
"""

from __future__ import annotations

from llmops.deploy.kubernetes.manifests import Obj, kubernetes_settings, load_queries, replica_name
from llmops.deploy.spec import DeploymentSpec
from llmops.serve.metrics import QUEUE_DEPTH_METRIC, RUNNING_METRIC


def _targets(spec: DeploymentSpec) -> dict[str, float]:
    scaling = kubernetes_settings(spec).autoscaling
    return {QUEUE_DEPTH_METRIC: scaling.queue_per_replica, RUNNING_METRIC: scaling.running_per_replica}


def scaled_object(spec: DeploymentSpec, model_version: str) -> Obj:
    """KEDA: scale when the average queue or running batch per replica passes its target."""
    settings = kubernetes_settings(spec)
    name = replica_name(spec, model_version)
    queries = load_queries(spec, model_version)
    triggers = [
        {
            "type": "prometheus",
            "name": metric.removeprefix("llmops_engine_").replace("_", "-"),
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": settings.autoscaling.prometheus_url,
                "query": queries[metric],
                "threshold": f"{target:g}",
            },
        }
        for metric, target in _targets(spec).items()
    ]
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "labels": {"llmops.dev/deployment": spec.name}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicaCount": spec.replicas.min,
            "maxReplicaCount": spec.replicas.max,
            "pollingInterval": settings.autoscaling.polling_s,
            "cooldownPeriod": settings.autoscaling.cooldown_s,
            "triggers": triggers,
        },
    }


def horizontal_pod_autoscaler(spec: DeploymentSpec, model_version: str) -> Obj:
    """HPA on the per-pod custom metrics (the Prometheus adapter serves the replicas' gauges)."""
    settings = kubernetes_settings(spec)
    name = replica_name(spec, model_version)
    metrics = [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": metric},
                "target": {"type": "AverageValue", "averageValue": f"{target:g}"},
            },
        }
        for metric, target in _targets(spec).items()
    ]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "labels": {"llmops.dev/deployment": spec.name}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": max(1, spec.replicas.min),
            "maxReplicas": spec.replicas.max,
            "metrics": metrics,
            "behavior": {
                "scaleDown": {"stabilizationWindowSeconds": settings.autoscaling.cooldown_s},
            },
        },
    }
