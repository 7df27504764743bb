"""Monitoring results in the store: the background writer, alerts, drift references and reports,
online-evaluation summaries, and feedback attached to its request."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from llmops.data.synth import generate
from llmops.data.versions import DatasetStore
from llmops.errors import InvalidInput, NotFound
from llmops.monitor.alert_rules import parse_alert_rules
from llmops.monitor.alert_store import list_stored_alerts
from llmops.monitor.alerts import MetricSample
from llmops.monitor.drift_store import (
    list_reports,
    load_references,
    profile_from_dataset,
    reference_profile,
    save_reference,
)
from llmops.monitor.online_eval import OnlineEvalConfig
from llmops.monitor.online_eval_store import online_eval_summary
from llmops.monitor.service import Monitor, MonitorConfig
from llmops.monitor.store_writer import MonitorStoreWriter
from llmops.store import audit
from llmops.store.home import Home
from llmops.store.schema import DriftReportRecord, GatewayRequest, RequestFeedback


def test_alert_fires_and_resolves_as_one_row_and_is_adopted_after_restart(home: Home) -> None:
    rules = parse_alert_rules({"rules": [{"name": "hot", "metric": "temp", "op": ">", "threshold": 5}]})

    async def scenario() -> tuple[list[str], list[str]]:
        # only the writer runs: the scheduled evaluation would read this registry, which has no "temp"
        monitor = Monitor(MonitorConfig(alert_rules=rules), store=home.store)
        assert monitor.writer is not None
        await monitor.writer.start()
        monitor.alerts.evaluate([MetricSample("temp", 9.0, {"room": "a"})])
        await monitor.flush()
        firing = [r.status for r in list_stored_alerts(home.store)]
        await monitor.stop()
        # a new process adopts the alert still firing, and resolving it updates the same row
        again = Monitor(MonitorConfig(alert_rules=rules), store=home.store)
        assert again.writer is not None
        await again.writer.start()
        assert [r.rule for r in again.alerts.firing()] == ["hot"]
        assert again.alerts.evaluate([MetricSample("temp", 9.0, {"room": "a"})]) == []  # not re-notified
        [resolved] = again.alerts.evaluate([MetricSample("temp", 1.0, {"room": "a"})])
        assert resolved.status == "resolved"
        await again.stop()  # the writer writes what is queued on close
        return firing, [r.status for r in list_stored_alerts(home.store)]

    firing, after = asyncio.run(scenario())
    assert firing == ["firing"] and after == ["resolved"]
    [record] = list_stored_alerts(home.store, status="resolved", rule="hot")
    assert record.labels["room"] == "a" and record.resolved_at is not None and record.value == 9.0
    assert list_stored_alerts(home.store, status="firing") == []


def test_drift_reference_from_a_dataset_version_and_reports_kept(home: Home, cli: Any) -> None:
    datasets = DatasetStore.from_home(home)
    info = datasets.commit("intent-ref", generate("intent", 150, seed=0), "prompt_completion")
    profile = profile_from_dataset(datasets, info.ref)
    assert profile.samples == 150 and profile.source == "dataset intent-ref@1"
    stored = save_reference(home.store, home.artifacts, "bot@1", profile, deployment="bot", actor="tester")
    assert [(r.model_version, r.deployment, r.digest) for r in load_references(home.store)] == [
        ("bot@1", "bot", stored.digest)
    ]
    assert reference_profile(home.store, home.artifacts, "bot@1").samples == 150
    with home.store.read() as session:
        assert "monitor.drift_reference.set" in [e.action for e in audit.iter_events(session)]
    with pytest.raises(NotFound) as missing:
        reference_profile(home.store, home.artifacts, "bot@9")
    assert missing.value.param == "reference"
    # a version neither the registry nor the request log knows is refused, not tracked
    unknown = cli("monitor", "reference", "--version", "bot@2", "--dataset", info.ref)
    assert unknown.code == 2 and "no registered model 'bot'" in unknown.err
    assert {(r.model_version, r.digest) for r in load_references(home.store)} == {("bot@1", stored.digest)}
    tiny = datasets.commit("tiny", generate("intent", 5, seed=0), "prompt_completion")
    with pytest.raises(InvalidInput):
        profile_from_dataset(datasets, tiny.ref)

    async def scenario() -> None:
        monitor = Monitor(MonitorConfig(), store=home.store)
        await monitor.start()
        monitor.drift.set_reference("bot@1", profile)
        for row in generate("intent", 60, seed=3, domain="shifted"):
            monitor.on_response(
                request_id=row["id"], model_version="bot@1", prompt=row["prompt"], completion=""
            )
        assert (await monitor.drift.check_async("bot@1")).drifted
        await monitor.stop()

    asyncio.run(scenario())
    [report] = list_reports(home.store, model_version="bot@1")
    assert report.drifted and report.window_samples == 60 and report.feature("vocabulary").drifted


def test_online_scores_are_stored_per_version(home: Home) -> None:
    config = MonitorConfig(online_eval=OnlineEvalConfig(sample_rate=1.0))

    async def scenario() -> None:
        monitor = Monitor(config, store=home.store)
        await monitor.start()
        for index in range(4):
            version = "bot@1" if index % 2 else "bot@2"
            answer = "I cannot help with that." if index == 0 else "Sure, here it is."
            monitor.on_response(request_id=f"r{index}", model_version=version, prompt="hi", completion=answer)
        await monitor.flush()
        await monitor.stop()

    asyncio.run(scenario())
    summary = {(s.model_version, s.metric): (s.count, s.mean) for s in online_eval_summary(home.store)}
    assert summary == {("bot@1", "refusal"): (2, 1.0), ("bot@2", "refusal"): (2, 0.5)}
    assert [s.model_version for s in online_eval_summary(home.store, model_version="bot@2")] == ["bot@2"]


def test_feedback_is_attached_to_a_logged_or_recent_request(home: Home) -> None:
    with home.store.transaction() as session:
        session.add(
            GatewayRequest(
                id="logged-1", ts=datetime.now(UTC), key_id="key_a", endpoint="chat", model_version="bot@1",
                stream=False, prompt_tokens=1, completion_tokens=1, latency_ms=1.0, status=200,
                cost_usd=0.0, cache_hit=False,
            )
        )  # fmt: skip

    async def scenario() -> Monitor:
        monitor = Monitor(MonitorConfig(), store=home.store)
        await monitor.start()
        monitor.on_response(
            request_id="recent-1", model_version="bot@2", prompt="p", completion="c", key_id="k"
        )
        recent = await monitor.submit_feedback({"request_id": "recent-1", "thumbs": "up"}, key_id="k")
        assert (recent.model_version, recent.rating) == ("bot@2", "positive")
        logged = await monitor.submit_feedback(
            {"request_id": "logged-1", "score": 0.0, "corrected_output": "better"}, key_id="key_a"
        )
        assert logged.model_version == "bot@1" and logged.id.startswith("fb_")
        with pytest.raises(NotFound) as unknown:
            await monitor.submit_feedback({"request_id": "never", "thumbs": "up"}, key_id="k")
        assert unknown.value.param == "request_id"
        with pytest.raises(NotFound):  # another key's request looks unknown
            await monitor.submit_feedback(
                {"request_id": "logged-1", "thumbs": "up"}, key_id="k", may_rate=lambda t: t.key_id == "k"
            )
        with pytest.raises(InvalidInput) as bad:
            await monitor.submit_feedback({"request_id": "recent-1", "score": 3}, key_id="k")
        assert bad.value.param == "score"
        await monitor.stop()
        return monitor

    monitor = asyncio.run(scenario())
    with home.store.read() as session:
        rows = {row.request_id: row for row in session.execute(select(RequestFeedback)).scalars()}
    assert set(rows) == {"recent-1", "logged-1"} and rows["logged-1"].corrected_output == "better"
    assert rows["recent-1"].key_id == "k" and rows["recent-1"].thumbs == "up"
    rates = {rate.model_version: rate for rate in monitor.feedback.rates()}
    assert rates["bot@2"].rate == 1.0 and rates["bot@1"].negative == 1
    exposition = monitor.metrics.exposition().decode()
    assert 'llmops_feedback_rate{model_version="bot@2"} 1.0' in exposition
    assert "llmops_monitor_store_written_total 2.0" in exposition


def test_writer_keeps_rows_while_the_database_is_down_and_drops_beyond_its_queue(home: Home) -> None:
    async def scenario() -> tuple[bool, bool, int]:
        writer = MonitorStoreWriter(home.store, queue_max=2)
        rows = [_report_row(str(n)) for n in range(3)]
        accepted = [writer.submit(row) for row in rows]
        original = writer._merge

        def down(rows: object) -> None:
            from llmops.errors import StoreUnavailable

            raise StoreUnavailable("database is down")

        writer._merge = down  # type: ignore[method-assign]
        failed = await writer.flush()
        kept = writer.pending()
        writer._merge = original  # type: ignore[method-assign]
        return failed, accepted == [True, True, False], kept + 10 * int(await writer.flush())

    failed, dropped_third, kept_then_written = asyncio.run(scenario())
    assert failed is False and dropped_third and kept_then_written == 12
    with home.store.read() as session:
        assert sorted(r.id for r in session.execute(select(DriftReportRecord)).scalars()) == ["0", "1"]


def _report_row(ident: str) -> DriftReportRecord:
    return DriftReportRecord(
        id=ident, model_version="v", checked_at=datetime.now(UTC), drifted=False, report={"n": ident}
    )
