"""Feedback through the gateway, joined to its request in search; online evaluation per version."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from llmops.data.synth import generate
from llmops.data.versions import DatasetStore
from llmops.errors import InvalidInput
from llmops.monitor.drift_store import load_references
from llmops.security.roles import Role
from llmops.store import audit
from llmops.store.home import Home

pytestmark = pytest.mark.anyio
VERSIONS = {"s": "support-bot@1", "c": "support-bot@2"}  # mock name -> the version its arm serves


def _config(gw: Any) -> Any:
    arms = [
        {"name": "stable", "model": "support-bot@1", "weight": 1},
        {"name": "canary", "model": "support-bot@2", "weight": 1},
    ]
    monitor = {"online_eval": {"sample_rate": 1.0}, "store_flush_interval_s": 0.05}
    return gw.config(gw.deployment(arms=arms), monitor=monitor)


def _upstreams(gw: Any) -> dict[str, list[Any]]:
    return gw.in_process(
        **{"support-bot__stable": gw.MockUpstream("s"), "support-bot__canary": gw.MockUpstream("c")}
    )


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _traffic(client: httpx.AsyncClient, gw: Any, key: str, count: int) -> dict[str, str]:
    """Send at least ``count`` chats, more (up to 64) until both arms answered: the 50/50 split is
    random, and 8 requests all land on one arm about once in 128 runs. Returns request id -> the model
    version that answered."""
    answered: dict[str, str] = {}
    index = 0
    while index < count or (set(answered.values()) != set(VERSIONS.values()) and index < 64):
        body = gw.chat_body(messages=[{"role": "user", "content": f"where is my order {index}?"}])
        answer = await client.post("/v1/chat/completions", json=body, headers=gw.bearer(key))
        assert answer.status_code == 200, answer.text
        replica = answer.json()["choices"][0]["message"]["content"].split(":")[0]
        answered[answer.headers["x-request-id"]] = VERSIONS[replica]
        index += 1
    return answered


async def _feedback_errors(client: httpx.AsyncClient, gw: Any, key: str, rated: str) -> None:
    cases: list[tuple[Any, int, str]] = [
        ({"request_id": "does-not-exist", "thumbs": "up"}, 404, "request_id"),
        ({"request_id": rated, "score": 2}, 400, "score"),
        ({"request_id": rated, "thumbs": "sideways"}, 400, "thumbs"),
        ({"thumbs": "up"}, 400, "request_id"),
        ({"request_id": rated}, 400, "body"),
        ({"request_id": rated, "thumbs": "up", "stars": 5}, 400, "stars"),
    ]
    for body, status, param in cases:
        answer = await client.post("/v1/feedback", json=body, headers=gw.bearer(key))
        assert (answer.status_code, answer.json()["error"]["param"]) == (status, param), (body, answer.text)
    raw = await client.post("/v1/feedback", content=b"{not json", headers=gw.bearer(key))
    assert raw.status_code == 400 and raw.json()["error"]["param"] == "body"


async def test_feedback_joins_its_request_and_scores_appear_per_version(
    home: Home, make_key: Callable[..., str], gw: Any, cli: Any
) -> None:
    key, stranger, developer = make_key(), make_key(), make_key(Role.DEVELOPER)
    async with gw.client(home, _config(gw), _upstreams(gw)) as (client, _):
        answered = await _traffic(client, gw, key, 8)
        assert set(answered.values()) == set(VERSIONS.values())  # both arms served
        rated, other = list(answered)[:2]
        body = {"request_id": rated, "thumbs": "down", "comment": "wrong", "corrected_output": "ORD-1"}
        stored = await client.post("/v1/feedback", json=body, headers=gw.bearer(key))
        assert stored.status_code == 201, stored.text
        assert stored.json()["model_version"] == answered[rated] and stored.json()["rating"] == "negative"
        await _feedback_errors(client, gw, key, rated)
        theirs = await client.post(
            "/v1/feedback", json={"request_id": rated, "thumbs": "up"}, headers=gw.bearer(stranger)
        )
        assert theirs.status_code == 404  # another key's request is not revealed
        by_developer = {"request_id": other, "score": 0.75}
        assert (
            await client.post("/v1/feedback", json=by_developer, headers=gw.bearer(developer))
        ).status_code == 201

        async def joined() -> bool:
            rows = await client.get(
                "/api/requests", params={"version": answered[rated]}, headers=gw.bearer(developer)
            )
            if rows.status_code == 404:  # a version the registry does not know is found once logged
                return False
            return any(row["id"] == rated and row["feedback"] for row in rows.json())

        await _until(joined, "the feedback to join its request in search")
        detail = (await client.get(f"/api/requests/{rated}", headers=gw.bearer(developer))).json()
        assert [(f["thumbs"], f["corrected_output"]) for f in detail["feedback"]] == [("down", "ORD-1")]
        assert detail["timings"]["latency_ms"] > 0 and detail["prompt"] == "where is my order 0?"

        async def scored() -> bool:
            summary = await client.get("/api/monitor/online-eval", headers=gw.bearer(developer))
            return {item["model_version"] for item in summary.json()} == set(VERSIONS.values())

        await _until(scored, "online-evaluation scores of both versions")
        summary = (await client.get("/api/monitor/online-eval", headers=gw.bearer(developer))).json()
        assert sum(item["count"] for item in summary) == len(answered) and all(
            item["mean"] == 1.0 for item in summary
        )
        assert (await client.get(f"/api/requests/{rated}", headers=gw.bearer(developer))).json()[
            "online_eval"
        ]

        metrics = (await client.get("/metrics", headers=gw.bearer(developer))).text
        assert f'llmops_feedback_total{{model_version="{answered[rated]}",rating="negative"}} 1.0' in metrics
        for version in VERSIONS.values():
            assert f'llmops_online_eval_score_count{{metric="refusal",model_version="{version}"}}' in metrics
            assert f'llmops_feedback_rate{{model_version="{version}"}}' in metrics

        exported = await client.get(
            "/api/requests/export", params={"version": answered[rated]}, headers=gw.bearer(developer)
        )
        lines = [json.loads(line) for line in exported.text.splitlines()]
        assert exported.status_code == 200 and rated in [line["id"] for line in lines]
        parquet = await client.get(
            "/api/requests/export", params={"format": "parquet"}, headers=gw.bearer(developer)
        )
        table = pq.read_table(io.BytesIO(parquet.content)).to_pylist()
        assert (
            len(table) == len(answered)
            and next(row["feedback"] for row in table if row["id"] == rated)[0]["thumbs"] == "down"
        )
        refused = await client.get("/api/requests", headers=gw.bearer(key))
        assert refused.status_code == 403  # the request log is for developers

    found = cli("requests", "search", "--version", answered[rated], "--json")
    assert found.code == 0, found.err
    [row] = [row for row in json.loads(found.out) if row["id"] == rated]
    assert row["feedback"][0]["comment"] == "wrong"
    shown = cli("requests", "show", rated)
    assert shown.code == 0 and "corrected: ORD-1" in shown.out and "online refusal: 1.000" in shown.out
    assert cli("requests", "show", "nope").code == 2
    online = cli("monitor", "online-eval", "--json")
    assert {item["model_version"] for item in json.loads(online.out)} == set(VERSIONS.values())


async def test_monitor_settings_are_checked(home: Home, make_key: Callable[..., str], gw: Any) -> None:
    with pytest.raises(ValueError, match="unknown deployments"):
        gw.config(monitor={"drift_references": {"no-such-deployment": "data@1"}})
    with pytest.raises(ValueError, match="not both"):
        gw.config(monitor={"alert_rules_file": "a.yaml", "alert_rules": {"rules": [_RULE]}})
    bad_reference = gw.config(monitor={"drift_references": {"support-bot": "missing-dataset@1"}})
    with pytest.raises(InvalidInput) as refused:
        async with gw.client(home, bad_reference):
            pass
    assert refused.value.param == "monitor.drift_references.support-bot"
    key = make_key()
    async with gw.client(home, gw.config(monitor={"enabled": False})) as (client, gateway):
        assert gateway.monitor is None
        off = await client.post(
            "/v1/feedback", json={"request_id": "x", "thumbs": "up"}, headers=gw.bearer(key)
        )
        assert off.status_code == 404 and off.json()["error"]["code"] == "monitor_off"


_RULE = {"name": "r", "metric": "llmops_drift_score", "op": ">", "threshold": 1}


async def test_a_configured_reference_is_stored_once_across_restarts(home: Home, gw: Any) -> None:
    DatasetStore.from_home(home).commit("intent-ref", generate("intent", 120, seed=0), "prompt_completion")
    config = gw.config(
        gw.deployment(model="support-bot@1"), monitor={"drift_references": {"support-bot": "intent-ref@1"}}
    )
    for _ in range(2):
        async with gw.client(home, config) as (_, gateway):
            assert gateway.monitor is not None and gateway.monitor.monitor.drift.versions() == [
                "support-bot@1"
            ]
    with home.store.read() as session:
        actions = [event.action for event in audit.iter_events(session)]
    assert actions.count("monitor.drift_reference.set") == 1
    [reference] = load_references(home.store)
    assert (reference.deployment, reference.source) == ("support-bot", "dataset intent-ref@1")


async def test_an_answer_id_is_found_by_any_gateway_worker(
    home: Home, make_key: Callable[..., str], gw: Any
) -> None:
    """Two gateways on one store stand for two workers: feedback naming the answer's own id
    (``chatcmpl-...``) reaches the request whichever worker answered it, through the request log."""
    key, stranger = make_key(), make_key()
    config = gw.config(gw.deployment(), request_log={"flush_interval_s": 0.05, "mode": "strict"})
    upstreams = gw.in_process(**{"support-bot": gw.MockUpstream("s")})
    async with gw.client(home, config, upstreams) as (first, _):
        answer = await first.post("/v1/chat/completions", json=gw.chat_body(), headers=gw.bearer(key))
        assert answer.status_code == 200, answer.text
        request_id, answer_id = answer.headers["x-request-id"], answer.json()["id"]
    async with gw.client(home, config, upstreams) as (second, gateway):
        assert gateway.pipeline.request_of(answer_id) is None  # this worker never saw the answer
        theirs = {"request_id": answer_id, "thumbs": "up"}
        refused = await second.post("/v1/feedback", json=theirs, headers=gw.bearer(stranger))
        assert refused.status_code == 404 and refused.json()["error"]["param"] == "request_id"
        stored = await second.post(
            "/v1/feedback", json={"request_id": answer_id, "thumbs": "down"}, headers=gw.bearer(key)
        )
        assert stored.status_code == 201, stored.text
        assert stored.json()["request_id"] == request_id  # joined to the request, not the answer id
        unknown = {"request_id": "chatcmpl-never-answered", "thumbs": "up"}
        assert (await second.post("/v1/feedback", json=unknown, headers=gw.bearer(key))).status_code == 404
