"""The supervisor's autoscaling hook with fakes: it samples at the liveness interval, scales the stable
track when ``decide`` says so, records each change (reason with the numbers) and counts every
decision in the textfile; it waits while replicas settle, honours the cooldown, and a failed change
is recorded, not retried at once; ``llmops deploy status`` shows the last decision."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import CliRunner

from llmops.deploy.autoscale_metrics import AutoscaleMetrics
from llmops.deploy.autoscaler import Autoscaler, AutoscalerState, Decision
from llmops.deploy.load import LoadSampler, ReplicaLoad
from llmops.deploy.processes import ReplicaRecord
from llmops.deploy.spec import DeploymentSpec
from llmops.deploy.supervisor import DEPLOYMENT
from llmops.errors import LLMOpsError
from llmops.store.home import open_home
from llmops.store.lifecycle import Lifecycle

SPEC = DeploymentSpec.model_validate(
    {
        "name": "bot",
        "model": "bot@production",
        "replicas": {"count": 1, "min": 1, "max": 3},
        "liveness": {"interval_s": 1},
        "autoscaling": {"queue_per_replica": 2, "running_per_replica": 1, "cooldown_s": 5},
        "gateway": {"price": {"free": True}},
    }
)


def _record(index: int, state: str = "ready", track: str = "stable") -> ReplicaRecord:
    return ReplicaRecord(
        name=f"bot-{track}-{index}", track=track, model="bot@production", model_version="bot@1",
        host="127.0.0.1", url=f"http://r{index}", state=state,
    )  # fmt: skip


class FakeSet:
    """A replica set whose ``scale`` adds or removes ready records (or fails when told to)."""

    def __init__(self, spec: DeploymentSpec | None, count: int) -> None:
        self.spec = spec
        self.records = [_record(i) for i in range(count)] + [_record(0, track="canary")]
        self.scaled: list[int] = []
        self.fail: str | None = None

    def scale(self, track: str, count: int) -> dict[str, Any]:
        assert track == "stable"
        if self.fail:
            raise LLMOpsError(self.fail)
        self.scaled.append(count)
        stable = [r for r in self.records if r.track == "stable"]
        others = [r for r in self.records if r.track != "stable"]
        self.records = others + [_record(i) for i in range(count)] if count != len(stable) else self.records
        return {}


class Load:
    """Every replica's /metrics: ``waiting`` and ``running`` each, no first tokens."""

    def __init__(self) -> None:
        self.waiting, self.running = 0.0, 0.0

    def fetch(self, url: str) -> ReplicaLoad:
        return ReplicaLoad(self.waiting, self.running, {0.1: 0, math.inf: 0})


def _hook(tmp_path: Path, clock: list[float]) -> tuple[Autoscaler, Load]:
    load = Load()
    sampler = LoadSampler(load.fetch, clock=lambda: clock[0])
    metrics = AutoscaleMetrics(tmp_path / "metrics" / "deploy-bot.prom")
    return Autoscaler("bot", metrics, sampler=sampler, clock=lambda: clock[0]), load


def _exported(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def test_scales_out_under_load_and_in_when_quiet_recording_each_change(tmp_path: Path) -> None:
    clock = [1000.0]
    hook, load = _hook(tmp_path, clock)
    replicas, records = FakeSet(SPEC, 1), []
    record = lambda reason, numbers: records.append((reason, numbers))  # noqa: E731

    load.waiting, load.running = 5, 1
    decision = hook.tick(replicas, record)
    assert decision is not None and decision.reason == "cooldown", "a fresh deployment waits out a cooldown"
    clock[0] += 0.5
    assert hook.tick(replicas, record) is None, "sampled at most once per liveness.interval_s"

    clock[0] += 5
    decision = hook.tick(replicas, record)
    assert decision is not None and (decision.current, decision.desired) == (1, 3)
    assert replicas.scaled == [3]
    reason, numbers = records[-1]
    assert reason.startswith("autoscale up 1 -> 3: load above target (waiting/replica 5.00")
    assert numbers["waiting"] == 5 and numbers["desired"] == 3

    load.waiting, load.running = 0, 0
    clock[0] += 1
    assert hook.tick(replicas, record).reason == "cooldown"  # type: ignore[union-attr]
    clock[0] += 5
    assert hook.tick(replicas, record).desired == 2  # type: ignore[union-attr]
    clock[0] += 6
    assert hook.tick(replicas, record).desired == 1  # type: ignore[union-attr]
    clock[0] += 6
    assert hook.tick(replicas, record).reason == "steady"  # type: ignore[union-attr]
    assert replicas.scaled == [3, 2, 1] and len(records) == 3
    assert "autoscale down 2 -> 1: load below target" in records[-1][0]

    exported = _exported(tmp_path / "metrics" / "deploy-bot.prom")
    counts = {dict(labels)["direction"]: v for (name, labels), v in exported.items()
              if name == "llmops_autoscale_decisions_total"}  # fmt: skip
    assert counts == {"up": 1, "down": 2, "none": 3}  # two cooldowns and the steady one
    assert exported[("llmops_autoscale_current_replicas", (("deployment", "bot"),))] == 1
    assert exported[("llmops_autoscale_desired_replicas", (("deployment", "bot"),))] == 1
    assert hook.state.decision is not None and hook.state.decision.reason == "steady"


def test_nothing_is_decided_while_replicas_settle_or_without_autoscaling(tmp_path: Path) -> None:
    clock = [1000.0]
    hook, load = _hook(tmp_path, clock)
    load.waiting = 50
    settling = FakeSet(SPEC, 2)
    settling.records[1].state = "starting"
    clock[0] += 60
    assert hook.tick(settling, lambda *_: None) is None and settling.scaled == []
    fixed = FakeSet(SPEC.model_copy(update={"autoscaling": None}), 1)
    clock[0] += 60
    assert hook.tick(fixed, lambda *_: None) is None and fixed.scaled == []
    assert not (tmp_path / "metrics").exists()


def test_a_failed_change_is_recorded_and_waits_for_the_cooldown(tmp_path: Path) -> None:
    clock = [1000.0]
    hook, load = _hook(tmp_path, clock)
    replicas, records = FakeSet(SPEC, 1), []
    replicas.fail = "replica never became ready within 90s"
    load.waiting = 10
    clock[0] += 60
    decision = hook.tick(replicas, lambda reason, numbers: records.append(reason))
    assert decision is not None and decision.desired == 3
    assert records == [records[0]] and records[0].endswith("failed: replica never became ready within 90s")
    assert hook.state.decision is not None and hook.state.decision.error is not None
    clock[0] += 1
    assert hook.tick(replicas, lambda reason, numbers: records.append(reason)).reason == "cooldown"  # type: ignore[union-attr]
    exported = _exported(tmp_path / "metrics" / "deploy-bot.prom")
    assert exported[("llmops_autoscale_decisions_total", (("deployment", "bot"), ("direction", "up")))] == 0


def test_state_survives_a_restart_and_an_operator_change_restarts_the_cooldown(tmp_path: Path) -> None:
    clock = [1000.0]
    hook, load = _hook(tmp_path, clock)
    replicas = FakeSet(SPEC, 1)
    load.waiting = 10
    clock[0] += 60
    hook.tick(replicas, lambda *_: None)
    saved = AutoscalerState.model_validate(hook.state.model_dump(mode="json"))
    assert saved.last_change_at == clock[0] and saved.decision is not None and saved.decision.desired == 3

    again = Autoscaler("bot", AutoscaleMetrics(None), state=saved, sampler=LoadSampler(load.fetch),
                       clock=lambda: clock[0])  # fmt: skip
    clock[0] += 1
    assert again.tick(replicas, lambda *_: None).reason == "cooldown"  # type: ignore[union-attr]
    clock[0] += 10
    again.changed()
    clock[0] += 1
    assert again.tick(replicas, lambda *_: None).reason == "cooldown"  # type: ignore[union-attr]


def test_deploy_status_shows_the_last_decision(cli: CliRunner) -> None:
    home = open_home()
    state = AutoscalerState(
        last_change_at=1_700_000_000.0,
        decision=Decision(current=1, desired=3, reason="load above target", since=1_700_000_000.0,
                          numbers={"waiting_per_replica": 8.0, "running_per_replica": 1.0}),
    )  # fmt: skip
    data = {"spec": SPEC.model_dump(mode="json", exclude_unset=True), "replicas": [],
            "autoscaler": state.model_dump(mode="json")}  # fmt: skip
    Lifecycle(home.store, DEPLOYMENT).create("bot", actor="test", data=data)
    shown = cli("deploy", "status", "bot")
    assert shown.code == 0, shown.err
    assert "autoscaler: load above target, 1 -> 3 replicas since 22:13:20Z" in shown.out
    assert "waiting_per_replica=8.00" in shown.out and "last change 22:13:20Z" in shown.out
    as_json = json.loads(cli("deploy", "status", "bot", "--json").out)
    assert as_json[0]["autoscaler"]["desired"] == 3 and as_json[0]["autoscaler"]["error"] is None
