"""`promtool check metrics` accepts the gateway's and a replica's /metrics after real traffic.

Traffic first fills every labelled family worth checking: requests and tokens on the replica;
requests, latency, feedback, online evaluation, drift and alerts on the gateway. promtool ships in
Debian's ``prometheus`` package, which ``.ci/run`` installs; without it the test is skipped.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from typing import Any

import httpx
import pytest
from tests.gateway.test_gateway_serve_replica import EchoBackend

from llmops.data.synth import generate
from llmops.data.versions import DatasetStore
from llmops.gateway.upstreams import AsgiUpstream
from llmops.security.roles import Role
from llmops.serve import build_app as build_replica_app
from llmops.store.home import Home

PROMTOOL = shutil.which("promtool")
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        PROMTOOL is None,
        reason="promtool is not installed: `apt-get install prometheus` (Debian; .ci/run installs it)",
    ),
]


def _promtool(exposition: bytes) -> subprocess.CompletedProcess[bytes]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, "check", "metrics"], input=exposition, capture_output=True, timeout=60)


def _config(gw: Any) -> Any:
    monitor = {
        "drift": {"min_reference_samples": 20, "min_window_samples": 5},
        "online_eval": {"sample_rate": 1.0},
        "alert_rules": {
            "rules": [{"name": "any-drift", "metric": "llmops_drift_score", "op": ">=", "threshold": 0}]
        },
        "alert_interval_s": 0.05,
        "drift_interval_s": 0.05,  # the scheduled check in the serving process fills the drift metrics
    }
    return gw.config(gw.deployment(model="support-bot@1"), monitor=monitor)


async def _traffic(client: httpx.AsyncClient, gw: Any, key: str, developer: str) -> None:
    for row in generate("intent", 6, seed=1):
        body = gw.chat_body(messages=[{"role": "user", "content": row["prompt"]}], max_tokens=3)
        answer = await client.post("/v1/chat/completions", json=body, headers=gw.bearer(key))
        assert answer.status_code == 200, answer.text
    streamed = await client.post(
        "/v1/chat/completions", json={**body, "stream": True}, headers=gw.bearer(key)
    )
    assert streamed.status_code == 200
    assert (
        await client.post("/v1/chat/completions", json={"model": "nope"}, headers=gw.bearer(key))
    ).status_code
    rated = answer.headers["x-request-id"]
    feedback = await client.post(
        "/v1/feedback", json={"request_id": rated, "score": 0.5}, headers=gw.bearer(key)
    )
    assert feedback.status_code == 201, feedback.text
    deadline = time.monotonic() + 10
    while not (await client.get("/api/monitor/drift", headers=gw.bearer(developer))).json()["reports"]:
        assert time.monotonic() < deadline, "no scheduled drift check ran"
        await asyncio.sleep(0.05)


async def test_gateway_and_replica_metrics_pass_promtool(home: Home, make_key: Any, gw: Any) -> None:
    DatasetStore.from_home(home).commit("intent-ref", generate("intent", 40, seed=0), "prompt_completion")
    key, developer, deployer = make_key(), make_key(Role.DEVELOPER), make_key(Role.DEPLOYER)
    replica_app = build_replica_app(EchoBackend(), "support-bot")
    upstreams = {"support-bot": [AsgiUpstream(replica_app, name="replica-1")]}
    async with gw.client(home, _config(gw), upstreams) as (client, gateway):
        reference = {"dataset": "intent-ref@1", "reason": "launch"}
        path = "/api/deployments/support-bot/drift-reference"
        assert (await client.put(path, json=reference, headers=gw.bearer(developer))).status_code == 403
        missing = await client.put(
            path.replace("support-bot", "nope"), json=reference, headers=gw.bearer(deployer)
        )
        assert missing.status_code == 404
        set_ = await client.put(path, json=reference, headers=gw.bearer(deployer))
        assert set_.status_code == 200 and set_.json()["model_versions"] == ["support-bot@1"], set_.text
        await _traffic(client, gw, key, developer)
        assert gateway.monitor is not None
        await gateway.monitor.monitor.flush()
        gateway.monitor.monitor.alerts.evaluate(gateway.monitor.monitor.samples())
        exposition = (await client.get("/metrics", headers=gw.bearer(developer))).content
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=replica_app), base_url="http://r"
    ) as direct:
        replica_exposition = (await direct.get("/metrics")).content

    for name in (
        b"llmops_gateway_requests_total",
        b"llmops_drift_score",
        b"llmops_online_eval_score_count",
        b"llmops_feedback_total",
        b"llmops_alerts_firing",
    ):
        assert name in exposition, name
    assert (
        b"llmops_http_requests_total" in replica_exposition
        and b"llmops_prompt_tokens_total" in replica_exposition
    )
    for what, text in (("gateway", exposition), ("replica", replica_exposition)):
        result = _promtool(text)
        assert result.returncode == 0, f"{what}: {result.stdout.decode()}{result.stderr.decode()}"
