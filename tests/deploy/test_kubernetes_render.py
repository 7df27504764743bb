"""``llmops deploy render --target kubernetes``: every example spec renders into a kustomize tree that
``kubectl kustomize`` builds and whose objects validate against the Kubernetes schemas; manifests
carry no secret value, no ``latest`` tag and no root user; the autoscalers name metrics a running
replica really exports; a spec that cannot render is refused naming the field."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from tests.conftest import CliRunner
from tests.serve.conftest import FakeBackend

from llmops.deploy.kubernetes.bundle import kustomize_build, objects, write_bundle
from llmops.deploy.spec import load_spec, parse_spec
from llmops.errors import InvalidInput
from llmops.serve import ServeConfig, build_app

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "examples" / "deploy").glob("*.yaml"))
SUPPORT_BOT = ROOT / "examples" / "deploy" / "support-bot.yaml"
VERSIONS = {"stable": "support-bot@3", "canary": "support-bot@4"}
CRDS = {("keda.sh/v1alpha1", "ScaledObject"), ("monitoring.coreos.com/v1", "ServiceMonitor")}

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


def _spec(**kubernetes: Any) -> dict[str, Any]:
    raw = yaml.safe_load(SUPPORT_BOT.read_text())
    raw["targets"]["kubernetes"].update(kubernetes)
    return raw


@needs_kubectl
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("overlay", ["keda", "hpa"])
def test_every_example_builds_and_validates(example: Path, overlay: str, tmp_path: Path) -> None:
    validator = pytest.importorskip("kubernetes_validate")
    spec = load_spec(example)
    write_bundle(spec, VERSIONS, tmp_path)
    built = kustomize_build(tmp_path / "overlays" / overlay)
    kinds = sorted(item["kind"] for item in built)
    autoscaler = "ScaledObject" if overlay == "keda" else "HorizontalPodAutoscaler"
    assert kinds == sorted(
        ["Deployment", "Service", "PodDisruptionBudget"]
        + ["Deployment", "Service", "NetworkPolicy", "ServiceMonitor", autoscaler] * 2
    )
    assert all(item["metadata"]["namespace"] == spec.targets.kubernetes.namespace for item in built)  # type: ignore[union-attr]
    for item in built:
        if (item["apiVersion"], item["kind"]) in CRDS:
            continue  # custom resources: no schema ships with kubernetes-validate; see the test below
        validator.validate(item, validator.latest_version(), strict=True)


def test_custom_resources_have_the_fields_their_operators_need() -> None:
    spec = load_spec(SUPPORT_BOT)
    built = {(o["kind"], o["metadata"]["name"]): o for o in objects(spec, VERSIONS)}
    scaled = built[("ScaledObject", "support-bot-v3")]["spec"]
    assert scaled["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "support-bot-v3",
    }
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (1, 6)
    for trigger in scaled["triggers"]:
        assert trigger["type"] == "prometheus"
        assert set(trigger["metadata"]) == {"serverAddress", "query", "threshold"}
        assert 'service="support-bot-v3"' in trigger["metadata"]["query"]
    monitor = built[("ServiceMonitor", "support-bot-v3")]["spec"]
    service = built[("Service", "support-bot-v3")]
    assert monitor["selector"]["matchLabels"] == service["metadata"]["labels"]
    assert monitor["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]


def _rendered_text(tmp_path: Path) -> str:
    write_bundle(load_spec(SUPPORT_BOT), VERSIONS, tmp_path)
    return "\n".join(p.read_text() for p in sorted(tmp_path.rglob("*.yaml")))


def test_manifests_hold_no_secret_value_latest_tag_or_root_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sentinels = {"LLMOPS_SECRET": "s3cr3t-sentinel", "LLMOPS_DATABASE_URL": "postgresql://u:pw-sentinel@db/x"}
    for name, value in sentinels.items():
        monkeypatch.setenv(name, value)
    text = _rendered_text(tmp_path)
    for value in sentinels.values():
        assert value not in text
    assert "sentinel" not in text
    assert not re.search(r":latest\b", text)
    assert not re.search(r"runAsUser: 0\b|runAsNonRoot: false|privileged: true", text)
    assert "kind: Secret\n" not in text
    documents = [d for p in sorted(tmp_path.rglob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    for document in documents:
        pod = document.get("spec", {}).get("template", {}).get("spec")
        if not pod:
            continue
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            for env in container["env"]:
                if re.search(r"SECRET|DATABASE_URL|REDIS_URL|KEY|PASSWORD", env["name"]):
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], env


def test_autoscalers_name_metrics_a_replica_exports() -> None:
    with TestClient(build_app(FakeBackend(), "fake-model", ServeConfig())) as client:
        exposition = client.get("/metrics").text
    exported = set(re.findall(r"^([a-z_]+)(?:\{| )", exposition, flags=re.M))
    spec = load_spec(SUPPORT_BOT)
    named: set[str] = set()
    for item in objects(spec, VERSIONS, autoscaler="keda"):
        for trigger in item["spec"].get("triggers", []):
            named |= set(re.findall(r"(llmops_[a-z_]+)\{", trigger["metadata"]["query"]))
    for item in objects(spec, VERSIONS, autoscaler="hpa"):
        named |= {m["pods"]["metric"]["name"] for m in item["spec"].get("metrics", [])}
    assert named == {"llmops_engine_requests_waiting", "llmops_engine_requests_running"}
    assert named <= exported


def test_gpu_request_reaches_the_container_limits() -> None:
    spec = load_spec(ROOT / "examples" / "deploy" / "support-bot-gpu.yaml")
    deployment = next(o for o in objects(spec, {"stable": "support-bot@3"}) if o["kind"] == "Deployment"
                      and o["metadata"]["name"] != "llmops-gateway")  # fmt: skip
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"secret_name": None}, "targets.kubernetes.secret_name"),
        ({"image": "registry.example.com/llmops:latest"}, "targets.kubernetes.image"),
        ({"image": "registry.example.com/llmops"}, "targets.kubernetes.image"),
        ({"artifacts_claim": "Not_A_Name"}, "targets.kubernetes.artifacts_claim"),
    ],
)
def test_a_spec_that_cannot_render_names_the_field(change: dict[str, Any], field: str) -> None:
    raw = _spec(**change)
    raw["targets"]["kubernetes"] = {k: v for k, v in raw["targets"]["kubernetes"].items() if v is not None}
    with pytest.raises(InvalidInput) as caught:
        parse_spec(raw)
    assert caught.value.param == field


def test_render_refuses_a_spec_without_the_kubernetes_section_or_memory_limit() -> None:
    raw = _spec()
    del raw["targets"]
    with pytest.raises(InvalidInput) as caught:
        objects(parse_spec(raw), VERSIONS)
    assert caught.value.param == "targets.kubernetes"
    raw = _spec()
    del raw["resources"]["memory_limit_mb"]
    with pytest.raises(InvalidInput) as caught:
        objects(parse_spec(raw), VERSIONS)
    assert caught.value.param == "resources.memory_limit_mb"


def test_cli_render_writes_the_tree(tmp_path: Path, cli: CliRunner) -> None:
    out = tmp_path / "k8s"
    home = ["--home", str(tmp_path / "home")]
    result = cli(
        *home,
        "deploy",
        "render",
        SUPPORT_BOT,
        "--target",
        "kubernetes",
        "-o",
        out,
        "--version",
        "support-bot@3",
    )
    assert result.code == 0, result.err
    assert (out / "base" / "support-bot-v3.yaml").is_file()
    assert (out / "overlays" / "keda" / "kustomization.yaml").is_file()
    bad = cli(*home, "deploy", "render", SUPPORT_BOT, "--target", "kubernetes")
    assert bad.code != 0
    assert "pass -o DIR" in bad.err
