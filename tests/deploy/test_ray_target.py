"""The Ray Serve target end to end, on a local Ray cluster (2 CPUs, no dashboard, a small object store).

A tiny model is registered and deployed with the real CLI (`llmops deploy apply --target ray`, its own
process, joining the cluster through RAY_ADDRESS); the gateway (uvicorn on loopback, following the
store) fronts Serve's HTTP proxy like any upstream. Concurrent clients with a consumer key drive
Serve's autoscaling from 1 to 2 replicas; once they stop it scales back to 1; no client request
fails, and the official `openai` client works through the gateway. The replica counts seen over time
are printed (run with `-s`). Bad input: a GPU request on this GPU-less cluster names
`resources.gpus`; without Ray installed the target is one line naming `pip install 'llmops[ray]'`.

Ray needs a real cluster for what is not checked here: several nodes, GPUs, Ray Client addresses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from pydantic import SecretStr
from tests.conftest import CliRunner
from tests.factories import make_tiny_model
from tests.servers import serving

from llmops.deploy.ray.target import RayTarget
from llmops.deploy.spec import parse_spec
from llmops.gateway.app import build_app
from llmops.gateway.config import GatewayConfig
from llmops.gateway.service import build_gateway
from llmops.registry.client import Registry
from llmops.security.keys import KeySpec, KeyStore
from llmops.security.roles import Role
from llmops.settings import Settings
from llmops.store.home import open_home
from llmops.train.tokenizer import train_tokenizer

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray Serve is not installed (the ray extra)")
APP = "support-bot-stable-support-bot-1"
SYNC_S = 0.5


@dataclass
class Cluster:
    root: Path
    env: dict[str, str]
    gateway: str
    deployer: str
    consumer: str
    proxy_port: int


@dataclass
class Timeline:
    """Serve's replica counts of the application, sampled every 0.5 s by a thread."""

    start: float
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (s, running, all)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        from ray import serve

        while not self.stop.is_set():
            app = serve.status().applications.get(APP)
            if app is not None:
                states = {str(getattr(s, "value", s)): n for d in app.deployments.values()
                          for s, n in d.replica_states.items()}  # fmt: skip
                sample = (time.monotonic() - self.start, states.get("RUNNING", 0), sum(states.values()))
                self.samples.append(sample)
            self.stop.wait(0.5)

    def running(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def changes(self) -> list[tuple[float, int, int]]:
        """The samples where the counts changed (and the first)."""
        kept: list[tuple[float, int, int]] = []
        for sample in self.samples:
            if not kept or kept[-1][1:] != sample[1:]:
                kept.append(sample)
        return kept


@dataclass
class Load:
    """``clients`` concurrent clients, each sending its next chat request when the last one answered."""

    url: str
    key: str
    clients: int = 6
    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        body = {"model": "support-bot", "messages": [{"role": "user", "content": "where is my order"}],
                "max_tokens": 24}  # fmt: skip
        headers = {"Authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60) as client:

            async def one_client() -> None:
                while not self.stop.is_set():
                    try:
                        answer = await client.post("/v1/chat/completions", json=body)
                        self.statuses.append(answer.status_code)
                        if answer.status_code != 200:
                            self.errors.append(answer.text[:300])
                    except httpx.HTTPError as exc:
                        self.statuses.append(0)
                        self.errors.append(repr(exc))

            await asyncio.gather(*(one_client() for _ in range(self.clients)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _llmops(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmops", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _spec(proxy_port: int, **changes: Any) -> dict[str, Any]:
    return {
        "name": "support-bot",
        "model": "support-bot@production",
        "replicas": {"count": 1, "min": 1, "max": 2},
        "resources": {"threads": 1},
        "readiness": {"timeout_s": 180},
        "drain": {"grace_s": 5, "deregister_wait_s": SYNC_S + 0.2},
        "gateway": {"price": {"free": True}},
        "targets": {
            "ray": {
                "http_port": proxy_port,
                # short delays and look-back: scaling within seconds of the load changing
                "autoscaling": {
                    "target_ongoing_requests": 1,
                    "upscale_delay_s": 1,
                    "downscale_delay_s": 3,
                    "metrics_interval_s": 0.5,
                    "look_back_period_s": 2,
                },
            }
        },
        **changes,
    }


def _wait(check: Any, what: str, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    import ray

    root = tmp_path_factory.mktemp("ray-target")
    home = open_home(Settings(home=root / "home"))
    folder = root / "v1"
    tokenizer = train_tokenizer([f"where is my order number {i}" for i in range(200)], folder, vocab_size=300)
    make_tiny_model(folder, vocab_size=len(tokenizer))
    registry = Registry.from_home(home)
    registry.register(folder, "support-bot")
    registry.set_alias("support-bot", "production", 1)
    keys = KeyStore.from_home(home)
    deployer = keys.create(KeySpec(name="deployer", role=Role.DEPLOYER)).key
    consumer = keys.create(KeySpec(name="client", role=Role.CONSUMER)).key
    # health checks at the default interval (5 s, a 2 s probe): the upstream is Serve's proxy, one URL
    # for all its replicas, and one probe slowed down by a saturated 2-core machine ejects it whole
    config = GatewayConfig.model_validate({"allow_loopback_upstreams": True, "admin_sync_s": SYNC_S})
    # the replicas (Ray workers) inherit the environment of the cluster's start: one torch thread each
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(
            num_cpus=2, object_store_memory=80 * 1024 * 1024, include_dashboard=False, log_to_driver=False,
            logging_level="WARNING",
        )  # fmt: skip
    env = {**os.environ, "LLMOPS_HOME": str(root / "home"), "LLMOPS_ACTOR": "ray-e2e",
           "RAY_ADDRESS": ray.get_runtime_context().gcs_address}  # fmt: skip
    env.pop("LLMOPS_DATABASE_URL", None)
    try:
        with serving(build_app(build_gateway(config, home))) as url:
            yield Cluster(root, env, url, deployer, consumer, _free_port())
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()


@pytest.mark.slow
@needs_ray
def test_serve_scales_out_under_load_and_back(cluster: Cluster) -> None:
    from ray import serve

    began = time.monotonic()
    spec_file = cluster.root / "deployment.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(cluster.proxy_port)))
    env = {**cluster.env, "LLMOPS_GATEWAY_URL": cluster.gateway, "LLMOPS_GATEWAY_KEY": cluster.deployer}

    applied = _llmops(env, "deploy", "apply", str(spec_file), "--target", "ray")
    assert applied.returncode == 0, applied.stderr + applied.stdout
    assert APP in applied.stdout
    deployed_s = time.monotonic() - began
    assert serve.status().applications[APP].status.value == "RUNNING"

    # the official client through the gateway, answered by the replica on Serve
    client = openai.OpenAI(base_url=f"{cluster.gateway}/v1", api_key=cluster.consumer)
    answer = client.chat.completions.create(
        model="support-bot", messages=[{"role": "user", "content": "where is my order"}], max_tokens=5
    )
    assert answer.model == "support-bot" and answer.usage is not None and answer.usage.completion_tokens > 0
    with pytest.raises(openai.AuthenticationError):  # keys stay in the gateway
        openai.OpenAI(base_url=f"{cluster.gateway}/v1", api_key="sk-llmops-wrong").models.list()

    timeline = Timeline(began)
    watcher = threading.Thread(target=timeline.run, daemon=True)
    watcher.start()
    load = Load(cluster.gateway, cluster.consumer)
    loader = threading.Thread(target=load.run, daemon=True)
    try:
        _wait(lambda: timeline.running() == 1, "one running replica before the load", 30)
        loader.start()
        _wait(lambda: timeline.running() == 2, "Serve to scale out to 2 replicas under load", 180)
        scaled_out_s = time.monotonic() - began
        served_before = len(load.statuses)
        _wait(lambda: len(load.statuses) > served_before + 20, "requests answered with 2 replicas", 60)
        load.stop.set()
        loader.join(timeout=90)
        assert not loader.is_alive()
        _wait(lambda: timeline.samples[-1][1:] == (1, 1), "Serve to scale back to 1 replica", 180)
    finally:
        load.stop.set()
        timeline.stop.set()
        watcher.join(timeout=10)

    assert load.statuses and load.errors == [], load.errors[:3]
    assert set(load.statuses) == {200}
    counts = [running for _, running, _ in timeline.changes()]
    assert counts[0] == 1 and 2 in counts and counts[-1] == 1
    print(
        f"\nray target: deployed in {deployed_s:.1f}s, 2 replicas at {scaled_out_s:.1f}s, back to 1 at "
        f"{time.monotonic() - began:.1f}s; {len(load.statuses)} requests, all 200"
    )
    print("replica counts (s since apply began, running, all):", timeline.changes())

    status = _llmops(env, "deploy", "status", "support-bot", "--target", "ray", "--json")
    assert status.returncode == 0, status.stderr
    (reported,) = yaml.safe_load(status.stdout)
    assert [r["state"] for r in reported["replicas"]] == ["ready"]
    assert reported["replicas"][0]["url"].endswith("/support-bot/stable/support-bot-1")

    # `scale` pins the count; Serve replaces the replica (a new one ready before the old one stops)
    # while clients keep being answered
    light = Load(cluster.gateway, cluster.consumer, clients=2)
    loader = threading.Thread(target=light.run, daemon=True)
    loader.start()
    try:
        scaled = _llmops(env, "deploy", "scale", "support-bot", "1", "--target", "ray")
        assert scaled.returncode == 0, scaled.stderr + scaled.stdout
        status = _llmops(env, "deploy", "status", "support-bot", "--target", "ray", "--json")
        (reported,) = yaml.safe_load(status.stdout)
        # the replaced replica may still be stopping (draining); one replica is ready, pinned
        assert [r["state"] for r in reported["replicas"]].count("ready") == 1
        assert all(r["detail"].endswith("(pinned)") for r in reported["replicas"])
    finally:
        light.stop.set()
        loader.join(timeout=90)
    assert light.statuses and light.errors == [], light.errors[:3]
    print(
        f"scale to 1 pinned done at {time.monotonic() - began:.1f}s; {len(light.statuses)} requests, all 200"
    )

    # a canary track (what a rollout starts, through the same target) is an application of its own,
    # an arm at weight 0 in the gateway until the rollout moves traffic
    home = open_home(Settings(home=cluster.root / "home"))
    home = dataclasses.replace(
        home,
        settings=home.settings.model_copy(
            update={"gateway_url": cluster.gateway, "gateway_key": SecretStr(cluster.deployer)}
        ),
    )
    target = RayTarget.from_home(home)
    canary = target.apply(parse_spec(_spec(cluster.proxy_port)), track="canary", model="support-bot@1")
    assert sorted((r.track, r.state.value) for r in canary.replicas) == [
        ("canary", "ready"),
        ("stable", "ready"),
    ]
    admin = {"Authorization": f"Bearer {cluster.deployer}"}
    (deployment,) = [d for d in httpx.get(f"{cluster.gateway}/api/deployments", headers=admin).json()
                     if d["name"] == "support-bot"]  # fmt: skip
    assert {a["name"]: a["weight"] for a in deployment["arms"]}["canary"] == 0
    target.delete("support-bot", track="canary")
    assert "support-bot-canary-support-bot-1" not in serve.status().applications
    print(f"canary track applied and deleted by {time.monotonic() - began:.1f}s")

    deleted = _llmops(env, "deploy", "delete", "support-bot", "--target", "ray")
    assert deleted.returncode == 0, deleted.stderr
    assert APP not in serve.status().applications
    gone = httpx.get(
        f"{cluster.gateway}/api/deployments", headers={"Authorization": f"Bearer {cluster.deployer}"}
    )
    assert "support-bot" not in [d["name"] for d in gone.json()]


@pytest.mark.slow
@needs_ray
def test_a_gpu_request_on_a_cluster_without_gpus_names_the_field(
    cluster: Cluster, cli: CliRunner, tmp_path: Path
) -> None:
    spec_file = tmp_path / "deployment.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(cluster.proxy_port, resources={"threads": 1, "gpus": 1})))
    result = cli("deploy", "apply", str(spec_file), "--target", "ray")
    assert result.code == 2
    assert "resources.gpus" in result.err and "has 0" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_without_ray_the_target_names_the_extra(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.serve", None)
    spec_file = tmp_path / "deployment.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(8000)))
    result = cli("deploy", "apply", str(spec_file), "--target", "ray")
    assert result.code == 2
    assert "pip install 'llmops[ray]'" in result.err
    assert len(result.err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["apply", "status", "scale", "delete", "render"])
def test_help_names_the_ray_target(cli: CliRunner, command: str) -> None:
    result = cli("deploy", command, "--help")
    assert result.code == 0
    assert "--target" in result.out and "ray" in result.out
