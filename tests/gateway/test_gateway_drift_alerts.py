"""Drift in live traffic: the synthetic task's domain shifts behind the gateway and back.

Unshifted traffic stays under the drift thresholds, shifted traffic crosses them, and the alert
rule's webhook (a real loopback receiver) is notified exactly once when the alert fires and once
when it resolves. The reference is a dataset version named in the gateway config.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from llmops.data.synth import generate
from llmops.data.versions import DatasetStore
from llmops.monitor.drift_store import list_reports
from llmops.security.roles import Role
from llmops.store.home import Home

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
VERSION = "intent-bot@1"
WINDOW = 60


def _config(gw: Any, webhook_url: str) -> Any:
    monitor = {
        "drift_references": {"intent-bot": "intent-ref@1"},
        "drift_window_size": WINDOW,
        "drift_interval_s": 3600,  # checks are asked for through the admin API, at known points
        "alert_interval_s": 0.05,
        "store_flush_interval_s": 0.05,
        "alert_rules": {
            "webhooks": {"ops": {"url": webhook_url, "backoff_s": 0.05}},
            "rules": [
                {
                    "name": "prompt-drift",
                    "metric": "llmops_drift_detected",
                    "match": {"feature": "overall"},
                    "op": ">=",
                    "threshold": 1,
                    "labels": {"severity": "warning"},
                    "webhook": "ops",
                }
            ],
        },
    }
    return gw.config(gw.deployment("intent-bot", model=VERSION), monitor=monitor)


async def _send(client: httpx.AsyncClient, gw: Any, key: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        body = gw.chat_body("intent-bot", messages=[{"role": "user", "content": row["prompt"]}])
        answer = await client.post("/v1/chat/completions", json=body, headers=gw.bearer(key))
        assert answer.status_code == 200, answer.text


async def _check(client: httpx.AsyncClient, gw: Any, key: str) -> dict[str, Any]:
    answer = await client.post("/api/monitor/drift/check", headers=gw.bearer(key))
    assert answer.status_code == 200, answer.text
    [report] = answer.json()
    assert report["model_version"] == VERSION and report["window_samples"] == WINDOW
    return dict(report)


def _scores(report: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {f["feature"]: (f["score"], f["threshold"]) for f in report["features"]}


async def _wait_for(receiver: Any, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(receiver.bodies) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"webhook got {len(receiver.bodies)} notifications, expected {count}")
        await asyncio.sleep(0.05)


async def test_shifted_live_traffic_fires_the_drift_alert_once_and_it_resolves(
    home: Home, make_key: Any, gw: Any, webhook_receiver: Any, cli: Any
) -> None:
    DatasetStore.from_home(home).commit("intent-ref", generate("intent", 200, seed=0), "prompt_completion")
    key, developer = make_key(), make_key(Role.DEVELOPER)
    upstreams = gw.in_process(**{"intent-bot": gw.MockUpstream("bot")})
    async with gw.client(home, _config(gw, webhook_receiver.url), upstreams) as (client, gateway):
        await _send(client, gw, key, generate("intent", WINDOW, seed=1))
        calm = await _check(client, gw, developer)
        assert not calm["drifted"]
        assert all(score < threshold for score, threshold in _scores(calm).values()), _scores(calm)
        await asyncio.sleep(0.3)  # several alert evaluations: nothing may fire
        assert webhook_receiver.bodies == []

        await _send(client, gw, key, generate("intent", WINDOW, seed=2, domain="shifted"))
        shifted = await _check(client, gw, developer)
        score, threshold = _scores(shifted)["vocabulary"]
        assert shifted["drifted"] and score > threshold
        await _wait_for(webhook_receiver, 1)
        metrics = (await client.get("/metrics", headers=gw.bearer(developer))).text
        assert f'llmops_drift_detected{{feature="overall",model_version="{VERSION}"}} 1.0' in metrics

        await _send(client, gw, key, generate("intent", WINDOW, seed=5))
        recovered = await _check(client, gw, developer)
        assert not recovered["drifted"] and _scores(recovered)["vocabulary"][0] < threshold
        await _wait_for(webhook_receiver, 2)
        await asyncio.sleep(0.3)  # no further notification follows
        assert gateway.monitor is not None
        await gateway.monitor.monitor.flush()
        stored = (await client.get("/api/monitor/alerts", headers=gw.bearer(developer))).json()

    firing, resolved = webhook_receiver.bodies  # exactly two notifications
    assert [firing["status"], resolved["status"]] == ["firing", "resolved"]
    assert firing["alerts"][0]["fingerprint"] == resolved["alerts"][0]["fingerprint"]
    assert firing["commonLabels"] == {"alertname": "prompt-drift", "feature": "overall",
                                      "model_version": VERSION, "severity": "warning"}  # fmt: skip
    assert [(a["rule"], a["status"]) for a in stored] == [("prompt-drift", "resolved")]
    assert [r.drifted for r in list_reports(home.store, model_version=VERSION)] == [False, True, False]

    listed = cli("monitor", "alerts", "--json")
    assert [(a["rule"], a["status"]) for a in json.loads(listed.out)] == [("prompt-drift", "resolved")]
    latest = cli("monitor", "drift", "--version", VERSION, "--since", "1h", "--limit", str(WINDOW))
    assert latest.code == 0 and "no drift" in latest.out  # the newest window is unshifted again
    mixed = cli("monitor", "drift", "-v", VERSION, "--reference", "intent-ref@1", "--limit", str(2 * WINDOW))
    assert mixed.code == 1 and "DRIFTED" in mixed.out  # half of the newest prompts are shifted
    assert len(list_reports(home.store, model_version=VERSION)) == 5
