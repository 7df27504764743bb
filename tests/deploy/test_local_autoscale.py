"""The local autoscaler with real processes: a supervised deployment (min 1, max 3, one engine thread
and one running sequence per replica, a short cooldown) takes a bounded burst of concurrent requests
through a real gateway, scales out to at least 2 replicas, and once the burst stops scales back to 1,
draining what it removes, while a client keeps sending one request at a time throughout. No request
fails; each change is an audit event of actor ``autoscaler`` with its numbers; the decisions are in
the supervisor's metrics textfile; ``llmops deploy status`` shows the last decision. The replica
count over time is printed (``-s``) for docs/deployment.md."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import CliRunner
from tests.deploy.test_supervisor import _replica_processes, _stop_everything

from llmops.deploy.autoscale_metrics import textfile_path
from llmops.deploy.local import LocalTarget
from llmops.store import audit
from llmops.store.home import Home

pytestmark = pytest.mark.slow

BURST_CLIENTS = 8
BURST_CAP = 600  # requests: the burst is bounded even if scaling never comes
SPEC: dict[str, Any] = {
    "name": "support-bot",
    "model": "support-bot@production",
    "backend": {"kind": "transformers", "engine": {"max_num_seqs": 1}},
    "replicas": {"count": 1, "min": 1, "max": 3},
    "autoscaling": {"queue_per_replica": 2, "running_per_replica": 4, "cooldown_s": 3, "ttft_window_s": 5},
    "resources": {"threads": 1},
    "readiness": {"timeout_s": 300, "interval_s": 0.2},
    "liveness": {"interval_s": 0.5},
    "drain": {"grace_s": 15, "deregister_wait_s": 1.0},
    "gateway": {"price": {"free": True}},
}


@dataclass
class Clients:
    """``clients`` concurrent request loops through the gateway until ``stop`` (or ``cap`` requests)."""

    url: str
    key: str
    clients: int
    cap: int
    pause_s: float = 0.0
    results: list[tuple[int, str]] = field(default_factory=list)  # (status, text when failed)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        body = {"model": "support-bot", "messages": [{"role": "user", "content": "where is my order"}],
                "max_tokens": 24}  # fmt: skip
        headers = {"Authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60) as client:

            async def loop() -> None:
                while not self.stop.is_set() and len(self.results) < self.cap:
                    try:
                        answer = await client.post("/v1/chat/completions", json=body)
                        failed = "" if answer.status_code == 200 else answer.text[:200]
                        self.results.append((answer.status_code, failed))
                    except httpx.HTTPError as exc:
                        self.results.append((0, repr(exc)))
                    await asyncio.sleep(self.pause_s)

            await asyncio.gather(*(loop() for _ in range(self.clients)))

    def failures(self) -> list[tuple[int, str]]:
        return [r for r in self.results if r[0] != 200]


@dataclass
class Timeline:
    """(seconds since start, ready stable replicas, stable replicas) every 0.5 s."""

    target: LocalTarget
    points: list[tuple[float, int, int]] = field(default_factory=list)
    start: float = field(default_factory=time.monotonic)
    wall_start: float = field(default_factory=time.time)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            stable = self.target.status("support-bot").track("stable")
            ready = sum(1 for r in stable if r.state == "ready")
            self.points.append((time.monotonic() - self.start, ready, len(stable)))
            self.stop.wait(0.5)

    def ready(self) -> int:
        return self.points[-1][1] if self.points else 0

    def now(self) -> float:
        return time.monotonic() - self.start

    def changes(self) -> list[tuple[float, int, int]]:
        return [p for i, p in enumerate(self.points) if i == 0 or p[1:] != self.points[i - 1][1:]]


def _wait(check: Any, what: str, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _started(thread_target: Any) -> threading.Thread:
    thread = threading.Thread(target=thread_target, daemon=True)
    thread.start()
    return thread


def test_scales_out_under_a_burst_and_back_in_after_it(
    deploy_home: Home,
    gateway: tuple[str, str, str],
    cli: CliRunner,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, deployer, consumer = gateway
    spec_file = tmp_path / "deployment.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    target = LocalTarget(deploy_home, gateway_url=url, gateway_key=deployer)
    timeline = Timeline(target)
    trickle = Clients(url, consumer, clients=1, cap=100_000, pause_s=0.2)
    burst = Clients(url, consumer, clients=BURST_CLIENTS, cap=BURST_CAP)
    threads: list[threading.Thread] = []
    try:
        applied = cli("deploy", "apply", spec_file, "--gateway", url, "--gateway-key", deployer)
        assert applied.code == 0, applied.err
        assert [r.state for r in target.status("support-bot").replicas] == ["ready"], "saved before answering"
        threads += [_started(timeline.run)]
        _wait(lambda: _ask_ok(url, consumer), "the first answer through the gateway", 30)
        threads += [_started(trickle.run)]

        burst_started = timeline.now()
        threads += [_started(burst.run)]
        _wait(lambda: timeline.ready() >= 2 or len(burst.results) >= BURST_CAP, "a scale-out under the burst",
              180)  # fmt: skip
        out_at = timeline.now()
        assert timeline.ready() >= 2, f"no scale-out within {BURST_CAP} requests"
        time.sleep(3)  # the new replicas serve part of the burst
        burst.stop.set()
        burst_stopped = timeline.now()

        _wait(lambda: timeline.points[-1][1:] == (1, 1), "the scale-in back to one replica", 180)  # type: ignore[index]
        in_at = timeline.now()
        time.sleep(1)
        trickle.stop.set()
        timeline.stop.set()
        for thread in threads:
            thread.join(timeout=90)

        events = _autoscaler_events(deploy_home)
        with capsys.disabled():  # the timeline, for docs/deployment.md
            print(f"\nburst: {len(burst.results)} requests by {BURST_CLIENTS} clients from "
                  f"{burst_started:.1f}s to {burst_stopped:.1f}s")  # fmt: skip
            print(f"trickle (one client, 0.2 s pauses): {len(trickle.results)} requests")
            print(f"reached >=2 ready at {out_at:.1f}s, back to 1 at {in_at:.1f}s")
            for at, ready, stable in timeline.changes():
                print(f"  t={at:6.1f}s ready={ready} stable={stable}")
            for event in events:
                took = event.after["numbers"]["took_s"] if event.after else 0.0
                decided = event.ts.timestamp() - took - timeline.wall_start
                print(f"  t={decided:6.1f}s decided, took {took:.1f}s: {event.actor}: {event.reason}")
        assert burst.failures() == [] and trickle.failures() == []
        peak = max(p[1] for p in timeline.points)
        assert peak >= 2

        ups = [e for e in events if e.reason and e.reason.startswith("autoscale up")]
        downs = [e for e in events if e.reason and e.reason.startswith("autoscale down")]
        assert ups and downs, [e.reason for e in events]
        assert ups[0].after is not None and ups[0].after["numbers"]["waiting_per_replica"] > 2

        exported = {
            (s.name, s.labels.get("direction")): s.value
            for family in text_string_to_metric_families(
                textfile_path(deploy_home, "support-bot").read_text()
            )
            for s in family.samples
        }
        assert exported[("llmops_autoscale_decisions_total", "up")] == len(ups)
        assert exported[("llmops_autoscale_decisions_total", "down")] == len(downs)
        assert exported[("llmops_autoscale_current_replicas", None)] == 1

        shown = cli("deploy", "status", "support-bot")
        assert shown.code == 0 and "autoscaler: " in shown.out, shown.out
        as_json = cli("deploy", "status", "support-bot", "--json")
        assert '"autoscaler"' in as_json.out and '"desired": 1' in as_json.out
    finally:
        burst.stop.set()
        trickle.stop.set()
        timeline.stop.set()
        _stop_everything(target)
        assert _wait(lambda: not _replica_processes(deploy_home), "every replica to stop", 30)


def _ask_ok(url: str, key: str) -> bool:
    body = {"model": "support-bot", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    answer = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                        timeout=30)  # fmt: skip
    return answer.status_code == 200


def _autoscaler_events(home: Home) -> list[audit.AuditRecord]:
    with home.store.read() as session:
        return [e for e in audit.iter_events(session, action="deployment.running") if e.actor == "autoscaler"]
