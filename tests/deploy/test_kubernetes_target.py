"""``KubernetesTarget`` against the official client's API with its HTTP layer replaced by a recording
fake cluster (no cluster runs here): what apply creates, patches and deletes, in which order, and
that a replaced version goes only after the new one is ready."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from llmops.deploy.spec import load_spec

kubernetes = pytest.importorskip("kubernetes")

from llmops.deploy.kubernetes.target import KubernetesTarget  # noqa: E402

SPEC = load_spec(Path(__file__).parents[2] / "examples" / "deploy" / "support-bot.yaml")


@dataclass
class Response:
    status: int
    data: bytes
    reason: str = "OK"
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


@dataclass
class FakeCluster:
    """The API server as a dict of objects by path; every request recorded as (method, path)."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def request(self, method: str, url: str, headers: Any = None, body: Any = None, **_: Any) -> Any:
        """``RESTClientObject.request``: the client's one door to the network."""
        return kubernetes.client.rest.RESTResponse(self._answer(method, url, body))

    def _answer(self, method: str, url: str, body: Any) -> Response:
        parts = urlsplit(url)
        path, query = parts.path, parse_qs(parts.query)
        self.requests.append((method, path))
        if isinstance(body, (str, bytes)):
            body = json.loads(body)
        if method == "POST":
            name = body["metadata"]["name"]
            if body.get("kind") == "Deployment":  # the fake cluster starts pods at once
                body = {**body, "status": {"readyReplicas": body["spec"]["replicas"]}}
            self.objects[f"{path}/{name}"] = body
            return Response(201, json.dumps(body).encode())
        if method == "PATCH":
            target = path.removesuffix("/scale")
            self.objects[target]["spec"].update(body["spec"])
            if path.endswith("/scale"):
                scale = {"metadata": self.objects[target]["metadata"], "spec": body["spec"]}
                return Response(200, json.dumps({**scale, "status": body["spec"]}).encode())
            return Response(200, json.dumps(self.objects[target]).encode())
        if method == "DELETE":
            deleted = self.objects.pop(path, None)
            if deleted is None:
                return Response(404, b'{"kind":"Status","code":404}', "Not Found")
            return Response(200, json.dumps({"metadata": deleted["metadata"]}).encode())
        item = self.objects.get(path.removesuffix("/status"))
        if item is not None:
            return Response(200, json.dumps(item).encode())
        if path.endswith(("deployments", "pods")):
            selector = dict(s.split("=") for s in query.get("labelSelector", [""])[0].split(",") if s)
            items = [
                o for p, o in self.objects.items()
                if p.startswith(path + "/") and selector.items() <= o["metadata"]["labels"].items()
            ]  # fmt: skip
            return Response(200, json.dumps({"items": items}).encode())
        return Response(404, b'{"kind":"Status","code":404}', "Not Found")


@dataclass
class FakeGateway:
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def put_deployment(self, config: Any, reason: str | None = None) -> None:
        self.calls.append(("put_deployment", config.name))

    def put_arm(self, name: str, arm: str, model: str, **_: Any) -> None:
        self.calls.append(("put_arm", name, arm, model))

    def add_replica(self, name: str, arm: str, url: str, replica: str, version: str) -> None:
        self.calls.append(("add_replica", arm, url, version))

    def remove_replica(self, name: str, arm: str, replica: str) -> None:
        self.calls.append(("remove_replica", arm, replica))

    def delete_deployment(self, name: str, reason: str | None = None) -> None:
        self.calls.append(("delete_deployment", name))


def _target() -> tuple[KubernetesTarget, FakeCluster, FakeGateway]:
    api = kubernetes.client.ApiClient(kubernetes.client.Configuration(host="https://cluster.test"))
    cluster = FakeCluster()
    api.rest_client = cluster
    gateway = FakeGateway()
    versions = {"support-bot@production": "support-bot@3", "support-bot@4": "support-bot@4"}
    return KubernetesTarget(api, versions.__getitem__, gateway, poll_s=0.01), cluster, gateway  # type: ignore[arg-type]


def test_apply_creates_every_object_then_registers_the_service() -> None:
    target, cluster, gateway = _target()
    status = target.apply(SPEC)
    created = {path for method, path in cluster.requests if method == "POST"}
    ns = "/namespaces/llmops/"
    assert created == {
        f"/apis/apps/v1{ns}deployments", f"/api/v1{ns}services", f"/apis/policy/v1{ns}poddisruptionbudgets",
        f"/apis/networking.k8s.io/v1{ns}networkpolicies", f"/apis/keda.sh/v1alpha1{ns}scaledobjects",
        f"/apis/monitoring.coreos.com/v1{ns}servicemonitors",
    }  # fmt: skip
    assert len([m for m, _ in cluster.requests if m == "POST"]) == 8  # gateway 3, replica version 5
    assert gateway.calls == [
        ("put_deployment", "support-bot"),
        ("add_replica", "stable", "http://support-bot-v3.llmops.svc:8000", "support-bot@3"),
    ]
    assert status.name == "support-bot"
    secret_free = json.dumps(cluster.objects)
    assert "secretKeyRef" in secret_free and "s3cr3t" not in secret_free


def test_reapplying_patches_and_a_new_version_replaces_the_old_after_it_is_ready() -> None:
    target, cluster, gateway = _target()
    target.apply(SPEC)
    cluster.requests.clear()
    target.apply(SPEC, model="support-bot@4")
    methods = [(m, p) for m, p in cluster.requests if m in ("POST", "PATCH", "DELETE")]
    assert ("PATCH", "/apis/apps/v1/namespaces/llmops/deployments/llmops-gateway") in methods
    created_v4 = methods.index(("POST", "/apis/apps/v1/namespaces/llmops/deployments"))
    deleted_v3 = methods.index(("DELETE", "/apis/apps/v1/namespaces/llmops/deployments/support-bot-v3"))
    assert created_v4 < deleted_v3
    assert (
        "add_replica",
        "stable",
        "http://support-bot-v4.llmops.svc:8000",
        "support-bot@4",
    ) in gateway.calls
    assert not any(p.endswith("support-bot-v3") for p in cluster.objects)


def test_scale_patches_the_scale_subresource_within_bounds() -> None:
    target, cluster, _ = _target()
    target.apply(SPEC)
    target.scale("support-bot", 5)
    assert ("PATCH", "/apis/apps/v1/namespaces/llmops/deployments/support-bot-v3/scale") in cluster.requests
    assert (
        cluster.objects["/apis/apps/v1/namespaces/llmops/deployments/support-bot-v3"]["spec"]["replicas"] == 5
    )
    with pytest.raises(Exception, match=r"replicas\.min\.\.max"):
        target.scale("support-bot", 7)


def test_delete_drains_then_removes_the_replica_objects() -> None:
    target, cluster, gateway = _target()
    target.apply(SPEC.model_copy(update={"drain": SPEC.drain.model_copy(update={"deregister_wait_s": 0})}))
    target.delete("support-bot")
    assert ("remove_replica", "stable", "support-bot-v3") in gateway.calls
    assert gateway.calls[-1] == ("delete_deployment", "support-bot")
    assert not [p for p in cluster.objects if "support-bot-v3" in p]
