"""``KubernetesTarget``: the ``DeployTarget`` verbs on a cluster, through the official ``kubernetes``
client (the ``kubernetes`` extra).

``apply`` creates or patches the objects ``bundle.objects`` builds (gateway, the track's replica
Deployment, Service, NetworkPolicy, ServiceMonitor, KEDA ScaledObject), waits until the Deployment's
replicas are ready, then registers the version's Service with the gateway as the track's upstream
(Kubernetes balances over its pods); a version replaced on the track is deleted only after the new
one is ready and registered. ``scale`` patches the Deployment's scale subresource, ``drain``
deregisters the Services from the gateway, ``delete`` removes the objects by label.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from llmops.deploy.gateway_client import GatewayAdmin
from llmops.deploy.kubernetes.bundle import dump, objects
from llmops.deploy.kubernetes.manifests import Obj, kubernetes_settings, replica_name
from llmops.deploy.spec import DeploymentSpec
from llmops.deploy.target import STABLE, DeploymentStatus, ReplicaState, ReplicaStatus
from llmops.errors import InvalidInput, NotFound, UpstreamError
from llmops.registry.client import Registry
from llmops.store.home import Home

# kind -> (typed API class, the suffix of its read_/create_/patch_/delete_ methods)
TYPED = {
    "Deployment": ("AppsV1Api", "namespaced_deployment"),
    "Service": ("CoreV1Api", "namespaced_service"),
    "PodDisruptionBudget": ("PolicyV1Api", "namespaced_pod_disruption_budget"),
    "NetworkPolicy": ("NetworkingV1Api", "namespaced_network_policy"),
    "HorizontalPodAutoscaler": ("AutoscalingV2Api", "namespaced_horizontal_pod_autoscaler"),
}
CUSTOM = {"ScaledObject": "scaledobjects", "ServiceMonitor": "servicemonitors"}
REPLICA_KINDS = ("ScaledObject", "ServiceMonitor", "NetworkPolicy", "Service", "Deployment")


class KubernetesTarget:
    """Deployments on a Kubernetes cluster (see the module docstring)."""

    def __init__(
        self,
        api: client.ApiClient,
        resolve: Callable[[str], str],
        gateway: GatewayAdmin | None = None,
        *,
        poll_s: float = 2.0,
    ) -> None:
        self.api, self.resolve, self.gateway, self.poll_s = api, resolve, gateway, poll_s
        self.specs: dict[str, DeploymentSpec] = {}

    @classmethod
    def from_home(cls, home: Home) -> KubernetesTarget:
        """In a pod: its service account; elsewhere: the kubeconfig's current context."""
        from kubernetes import config
        from kubernetes.config.config_exception import ConfigException

        try:
            config.load_incluster_config()
        except ConfigException:
            config.load_kube_config()
        settings = home.settings
        key = settings.gateway_key.get_secret_value() if settings.gateway_key else None
        gateway = GatewayAdmin(settings.gateway_url, key) if settings.gateway_url else None
        registry = Registry.from_home(home)
        return cls(client.ApiClient(), lambda ref: registry.get(ref).ref, gateway)

    # -- the DeployTarget verbs ---------------------------------------------------------------

    def render(self, spec: DeploymentSpec, *, track: str = STABLE, model: str | None = None) -> str:
        return dump(objects(spec, {track: model or spec.model}))

    def apply(
        self,
        spec: DeploymentSpec,
        *,
        track: str = STABLE,
        model: str | None = None,
        replicas: int | None = None,
    ) -> DeploymentStatus:
        version = self.resolve(model or spec.model)
        self.specs[spec.name] = spec
        before = self._deployments(spec, track)
        for item in objects(spec, {track: version}):
            if (
                item["kind"] == "Deployment"
                and replicas is not None
                and item["metadata"]["name"] != "llmops-gateway"
            ):
                item["spec"]["replicas"] = replicas
            self._apply_object(item)
        name = replica_name(spec, version)
        self._wait_ready(spec, name)
        self._register(spec, track, model or spec.model, version)
        for old in before:
            if old != name:
                self._delete_replica_objects(spec, old)
        return self.status(spec.name)

    def status(self, name: str, *, live_metrics: bool = False) -> DeploymentStatus:
        spec = self._spec(name)
        namespace = kubernetes_settings(spec).namespace
        pods = client.CoreV1Api(self.api).list_namespaced_pod(
            namespace, label_selector=f"llmops.dev/deployment={name},app.kubernetes.io/component=replica"
        )
        replicas = [_pod_status(spec, pod) for pod in pods.items]
        return DeploymentStatus(name=name, model=spec.model, supervisor=None, replicas=replicas)

    def scale(self, name: str, replicas: int, *, track: str = STABLE) -> DeploymentStatus:
        spec = self._spec(name)
        if track == STABLE and not spec.replicas.min <= replicas <= spec.replicas.max:
            raise InvalidInput(
                f"replicas: {replicas} lies outside replicas.min..max "
                f"({spec.replicas.min}..{spec.replicas.max})",
                param="replicas",
            )
        apps = client.AppsV1Api(self.api)
        for deployment in self._deployments(spec, track):
            apps.patch_namespaced_deployment_scale(
                deployment, kubernetes_settings(spec).namespace, {"spec": {"replicas": replicas}}
            )
        return self.status(name)

    def drain(self, name: str, *, track: str | None = None) -> DeploymentStatus:
        spec = self._spec(name)
        if self.gateway is not None:
            for each in [track] if track else ["stable", "canary", "shadow"]:
                for deployment in self._deployments(spec, each):
                    self.gateway.remove_replica(name, each, deployment)
            time.sleep(spec.drain.deregister_wait_s)
        return self.status(name)

    def delete(self, name: str, *, track: str | None = None) -> None:
        spec = self._spec(name)
        self.drain(name, track=track)
        for deployment in self._deployments(spec, track):
            self._delete_replica_objects(spec, deployment)
        if self.gateway is not None:
            if track is None:
                self.gateway.delete_deployment(name, reason="deploy delete")
            else:
                self.gateway.delete_arm(name, track)

    # -- the cluster --------------------------------------------------------------------------

    def _spec(self, name: str) -> DeploymentSpec:
        if name not in self.specs:
            raise NotFound(f"deployment {name!r} was not applied through this target; apply its spec first")
        return self.specs[name]

    def _deployments(self, spec: DeploymentSpec, track: str | None) -> list[str]:
        selector = f"llmops.dev/deployment={spec.name},app.kubernetes.io/component=replica"
        if track is not None:
            selector += f",llmops.dev/track={track}"
        found: Any = client.AppsV1Api(self.api).list_namespaced_deployment(
            kubernetes_settings(spec).namespace, label_selector=selector
        )
        return sorted(item.metadata.name for item in found.items)

    def _apply_object(self, item: Obj) -> None:
        """Create the object, or patch it when it exists."""
        kind, name, namespace = item["kind"], item["metadata"]["name"], item["metadata"]["namespace"]
        if kind in CUSTOM:
            group, _, version = item["apiVersion"].partition("/")
            custom = client.CustomObjectsApi(self.api)
            where = (group, version, namespace, CUSTOM[kind])
            try:
                custom.get_namespaced_custom_object(*where, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise _upstream(exc, kind, name) from None
                custom.create_namespaced_custom_object(*where, item)
                return
            custom.patch_namespaced_custom_object(*where, name, item)
            return
        api_class, suffix = TYPED[kind]
        api: Any = getattr(client, api_class)(self.api)
        try:
            getattr(api, f"read_{suffix}")(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise _upstream(exc, kind, name) from None
            getattr(api, f"create_{suffix}")(namespace, item)
            return
        getattr(api, f"patch_{suffix}")(name, namespace, item)

    def _delete_replica_objects(self, spec: DeploymentSpec, name: str) -> None:
        namespace = kubernetes_settings(spec).namespace
        for kind in REPLICA_KINDS:
            try:
                if kind in CUSTOM:
                    group, version = {
                        "ScaledObject": ("keda.sh", "v1alpha1"),
                        "ServiceMonitor": ("monitoring.coreos.com", "v1"),
                    }[kind]
                    client.CustomObjectsApi(self.api).delete_namespaced_custom_object(
                        group, version, namespace, CUSTOM[kind], name
                    )
                else:
                    api_class, suffix = TYPED[kind]
                    getattr(getattr(client, api_class)(self.api), f"delete_{suffix}")(name, namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise _upstream(exc, kind, name) from None

    def _wait_ready(self, spec: DeploymentSpec, name: str) -> None:
        apps = client.AppsV1Api(self.api)
        namespace = kubernetes_settings(spec).namespace
        deadline = time.monotonic() + spec.readiness.timeout_s
        while True:
            deployment: Any = apps.read_namespaced_deployment_status(name, namespace)
            wanted = deployment.spec.replicas or 0
            if (deployment.status.ready_replicas or 0) >= wanted:
                return
            if time.monotonic() > deadline:
                raise UpstreamError(
                    f"deployment {name}: {deployment.status.ready_replicas or 0}/{wanted} replicas ready "
                    f"after readiness.timeout_s={spec.readiness.timeout_s:g}; see kubectl describe"
                )
            time.sleep(self.poll_s)

    def _register(self, spec: DeploymentSpec, track: str, model: str, version: str) -> None:
        if self.gateway is None:
            return
        settings = kubernetes_settings(spec)
        name = replica_name(spec, version)
        url = f"http://{name}.{settings.namespace}.svc:{settings.replica_port}"
        if track == STABLE:
            self.gateway.put_deployment(spec.gateway_deployment(), reason="deploy apply")
        else:
            self.gateway.put_arm(spec.name, track, model, weight=0.0, upstream_model=spec.served_model)
        self.gateway.add_replica(spec.name, track, url, name, version)


def _pod_status(spec: DeploymentSpec, pod: Any) -> ReplicaStatus:
    labels = pod.metadata.labels or {}
    ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
    restarts = sum(c.restart_count for c in (pod.status.container_statuses or []))
    state = ReplicaState.READY if ready else ReplicaState.STARTING
    if pod.metadata.deletion_timestamp is not None:
        state = ReplicaState.DRAINING
    return ReplicaStatus(
        name=pod.metadata.name, deployment=spec.name, track=labels.get("llmops.dev/track", STABLE),
        model=spec.model, model_version=labels.get("llmops.dev/version", "?"), url=None, pid=None,
        port=kubernetes_settings(spec).replica_port, state=state, restarts=restarts,
        started_at=pod.status.start_time, detail=pod.status.phase,
    )  # fmt: skip


def _upstream(exc: ApiException, kind: str, name: str) -> UpstreamError:
    return UpstreamError(f"kubernetes API: {kind} {name}: {exc.status} {exc.reason}")
