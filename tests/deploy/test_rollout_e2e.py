"""Rollouts end to end with real processes under steady client load (~20 requests/s).

A real gateway (uvicorn on loopback, following the store, scoring every answer online), replicas
started by the supervisor (`llmops deploy apply`), and the rollout controller as its own process
(`llmops rollout start` / `llmops rollout controller`). Three sabotaged candidates (one answering
wrongly, one failing, one slow) are each served by a small OpenAI-compatible server registered as the
candidate's replica (the candidate's spec names it as an `openai` backend) and must be rolled back
at the first step, production untouched, each decision audited with its numbers. The good candidate
runs on real replicas; its controller is SIGKILLed mid-step and a new one resumes it to promotion,
with no client request failing. (An alias moved by hand reaching every gateway worker is
tests/gateway/test_gateway_follows_store.py; a SIGKILLed replica's restart and readmission is
tests/deploy/test_supervisor.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.deploy.test_supervisor import _replica_processes, _stop_everything
from tests.factories import make_tiny_model
from tests.servers import serving

from llmops.deploy.local import LocalTarget
from llmops.deploy.rollout_state import ROLLOUT_MACHINE
from llmops.deploy.traffic import current_weights
from llmops.gateway.app import build_app
from llmops.gateway.config import GatewayConfig
from llmops.gateway.service import build_gateway
from llmops.registry.client import Registry
from llmops.security.keys import KeySpec, KeyStore
from llmops.security.roles import Role
from llmops.settings import Settings
from llmops.store import audit
from llmops.store.home import Home, open_home
from llmops.store.lifecycle import Lifecycle, LifecycleRecord
from llmops.train.tokenizer import train_tokenizer

pytestmark = pytest.mark.slow

MOCK = Path(__file__).resolve().parents[1] / "gateway" / "mock_upstream.py"
SYNC_S = 0.5
PASSED = {"passed": True, "gates": [{"name": "acc", "passed": True, "reason": "acc 0.9 >= 0.5"}]}


@dataclass
class Load:
    """A client sending ~20 chat requests per second to the gateway; every answer is kept."""

    url: str
    key: str
    results: list[tuple[float, int, str]] = field(default_factory=list)  # (monotonic, status, text)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        body = {"model": "support-bot", "messages": [{"role": "user", "content": "where is my order"}],
                "max_tokens": 3}  # fmt: skip
        headers = {"Authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30) as client:

            async def one() -> None:
                try:
                    answer = await client.post("/v1/chat/completions", json=body)
                    self.results.append((time.monotonic(), answer.status_code, answer.text[:200]))
                except httpx.HTTPError as exc:
                    self.results.append((time.monotonic(), 0, repr(exc)))

            tasks: set[asyncio.Task[None]] = set()
            while not self.stop.is_set():
                task = asyncio.create_task(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(0.05)
            await asyncio.gather(*tasks)

    def between(self, start: float, end: float) -> list[tuple[float, int, str]]:
        return [r for r in list(self.results) if start <= r[0] <= end]


@dataclass
class Stack:
    home: Home
    env: dict[str, str]
    url: str
    deployer: str
    load: Load
    spec: dict[str, Any]
    folder: Path
    registry: Registry


def _llmops(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmops", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _spec(**changes: Any) -> dict[str, Any]:
    # min_requests above min_samples: online scores are written a moment after their request
    step = {"min_duration_s": 1.5, "min_requests": 14, "max_duration_s": 30}
    return {
        "name": "support-bot",
        "model": "support-bot@production",
        "resources": {"threads": 1},
        "readiness": {"timeout_s": 90, "interval_s": 0.2},
        "liveness": {"interval_s": 0.5},
        "restart": {"backoff_initial_s": 0.2},
        "drain": {"grace_s": 5, "deregister_wait_s": SYNC_S + 0.2},
        "slo": {"max_error_rate": 0.05},
        "gateway": {"price": {"free": True}},
        "rollout": {
            "steps": [{"weight": w, **step} for w in (25, 50, 100)],
            "analysis": {
                "min_samples": 8,
                "max_p95_latency_ratio": 3.0,
                "max_p95_ttft_ratio": 3.0,
                "max_online_eval_drop": 0.2,
            },
            "analysis_interval_s": 0.3,
        },
        **changes,
    }


def _wait(check: Any, what: str, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("rollout-e2e")
    home = open_home(Settings(home=root / "home"))
    env = {**os.environ, "LLMOPS_HOME": str(root / "home"), "OMP_NUM_THREADS": "1", "LLMOPS_ACTOR": "e2e"}
    env.pop("LLMOPS_DATABASE_URL", None)
    registry = Registry.from_home(home)
    folder = root / "v1"
    tokenizer = train_tokenizer([f"where is my order number {i}" for i in range(200)], folder, vocab_size=300)
    make_tiny_model(folder, vocab_size=len(tokenizer))
    registry.register(folder, "support-bot")
    registry.set_alias("support-bot", "production", 1)
    keys = KeyStore.from_home(home)
    deployer = keys.create(KeySpec(name="deployer", role=Role.DEPLOYER)).key
    consumer = keys.create(KeySpec(name="client", role=Role.CONSUMER)).key
    config = GatewayConfig.model_validate(
        {
            "allow_loopback_upstreams": True,
            "admin_sync_s": SYNC_S,
            "health": {"interval_s": 0.5},
            # every answer scored: a refusing candidate shows as an online-evaluation drop
            "monitor": {"online_eval": {"sample_rate": 1.0}},
        }
    )
    spec = _spec()
    (root / "deployment.yaml").write_text(yaml.safe_dump(spec))
    target = LocalTarget(home)
    with serving(build_app(build_gateway(config, home))) as url:
        load = Load(url, consumer)
        thread = threading.Thread(target=load.run, daemon=True)
        try:
            applied = _llmops(env, "deploy", "apply", str(root / "deployment.yaml"), "--gateway", url,
                              "--gateway-key", deployer)  # fmt: skip
            assert applied.returncode == 0, applied.stderr + applied.stdout
            env.update(LLMOPS_GATEWAY_URL=url, LLMOPS_GATEWAY_KEY=deployer)  # a respawned supervisor's
            thread.start()
            _wait(lambda: any(s == 200 for _, s, _ in load.results), "the first answer through the gateway")
            yield Stack(home, env, url, deployer, load, spec, root, registry)
        finally:
            load.stop.set()
            thread.join(timeout=30)
            _stop_everything(target)


def _new_version(stack: Stack, tag: str, *, weights: bool) -> str:
    """A new registered version of support-bot with passed gates; its own weights when it is served."""
    folder = stack.folder / tag
    shutil.copytree(stack.folder / "v1", folder)
    if weights:
        make_tiny_model(folder, seed=7, vocab_size=_vocab(folder))
    else:
        (folder / "generation_config.json").write_text(f'{{"served_by": "{tag}"}}')
    info = stack.registry.register(folder, "support-bot")
    stack.registry.merge_tags(info.ref, {"gates/smoke": PASSED})
    return info.ref


def _vocab(folder: Path) -> int:
    return int(json.loads((folder / "config.json").read_text())["vocab_size"])


def _stable_pids(home: Home) -> set[int | None]:
    status = LocalTarget(home).status("support-bot")
    return {r.pid for r in status.replicas if r.track == "stable" and r.state.value == "ready"}


def _rollout(home: Home) -> LifecycleRecord:
    record = Lifecycle(home.store, ROLLOUT_MACHINE).latest("support-bot")
    assert record is not None
    return record


def _audited(home: Home, record: LifecycleRecord, to_state: str) -> dict[str, Any]:
    with home.store.read() as session:
        events = list(audit.iter_events(session, target=f"rollout:support-bot/{record.id}"))
    (event,) = [e for e in events if e.action == f"rollout.{to_state}"]
    assert event.after is not None
    return dict(event.after["numbers"])


@contextlib.contextmanager
def _mock_replica(*args: str) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, str(MOCK), "--port", "0", *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(timeout=10)


SABOTAGE = {
    # name: (mock server arguments, the metric whose failure must roll it back)
    "answers-wrongly": (["--name", "I'm sorry, I cannot help with that"], "online_eval_drop"),
    "errors": (["--fail-status", "500"], "error_rate_increase"),
    "slow": (["--first-delay", "0.5"], "p95_latency_ratio"),
}


@pytest.mark.parametrize("kind", list(SABOTAGE))
def test_a_sabotaged_candidate_is_rolled_back_at_the_first_step(stack: Stack, kind: str) -> None:
    arguments, metric = SABOTAGE[kind]
    candidate = _new_version(stack, kind, weights=False)
    pids_before = _stable_pids(stack.home)
    with _mock_replica(*arguments) as mock_url:
        spec_file = stack.folder / f"{kind}.yaml"
        spec_file.write_text(
            yaml.safe_dump({**stack.spec, "backend": {"kind": "openai", "urls": [mock_url]}})
        )
        started = time.monotonic()
        run = _llmops(stack.env, "rollout", "start", "support-bot", "--candidate", candidate, "--spec",
                      str(spec_file), "--settle-s", str(SYNC_S + 0.1), "--lease-s", "5")  # fmt: skip
        finished = time.monotonic()
    assert run.returncode == 1, run.stderr + run.stdout
    record = _rollout(stack.home)
    assert record.state == "rolled_back"
    history = Lifecycle(stack.home.store, ROLLOUT_MACHINE).history(record.id)
    (failing,) = [t for t in history if t.to_state == "rolling_back"]
    assert failing.numbers["step"] == 1, "rolled back at the first step"
    verdicts = failing.numbers["analysis"]["metrics"]
    assert verdicts[metric]["status"] == "fail", verdicts
    assert verdicts[metric]["n_candidate"] >= 8 and verdicts[metric]["n_stable"] >= 8
    assert _audited(stack.home, record, "rolling_back")["analysis"]["metrics"][metric]["status"] == "fail"
    assert _audited(stack.home, record, "rolled_back")["restored"] == "support-bot@1"

    assert stack.registry.get("support-bot@production").version == 1, "production untouched"
    assert _stable_pids(stack.home) == pids_before, "the stable replicas were never touched"
    assert current_weights(stack.home.store, "support-bot") == {"stable": 100.0, "canary": 0.0}
    answers = stack.load.between(started, finished)
    assert len(answers) >= 20
    if kind != "errors":
        assert [a for a in answers if a[1] != 200] == [], "a wrong or slow answer still answers"
    time.sleep(SYNC_S + 0.5)
    after = time.monotonic()
    _wait(lambda: len(stack.load.between(after, time.monotonic())) >= 10, "more traffic")
    assert all(a[1] == 200 for a in stack.load.between(after, time.monotonic())), "stable serves again"


def test_a_good_candidate_promotes_through_every_step_though_its_controller_is_killed(
    stack: Stack,
) -> None:
    candidate = _new_version(stack, "good", weights=True)
    started = time.monotonic()
    detached = _llmops(stack.env, "rollout", "start", "support-bot", "--candidate", candidate, "--detach",
                       "--lease-s", "3")  # fmt: skip
    assert detached.returncode == 0, detached.stderr + detached.stdout
    controller_args = ["rollout", "controller", "--poll-s", "0.3", "--settle-s", str(SYNC_S + 0.1),
                       "--lease-s", "3"]  # fmt: skip
    log = (stack.folder / "controller.log").open("w")
    first = subprocess.Popen([sys.executable, "-m", "llmops", *controller_args], env=stack.env, stdout=log,
                             stderr=subprocess.STDOUT)  # fmt: skip
    second = None
    try:
        in_step_2 = _wait(
            lambda: (r := _rollout(stack.home)).state == "canary" and r.data.get("step") == 1 and r,
            "the second canary step",
        )
        first.send_signal(signal.SIGKILL)  # mid-step
        first.wait(timeout=10)
        time.sleep(1.0)
        assert _rollout(stack.home).data["step"] == 1, "nothing drives it while no controller runs"
        second = subprocess.Popen([sys.executable, "-m", "llmops", *controller_args], env=stack.env,
                                  stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        done = _wait(lambda: (r := _rollout(stack.home)).terminal and r, "the rollout to end", 150)
        finished = time.monotonic()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        log.close()
    assert done.state == "promoted", (stack.folder / "controller.log").read_text()[-3000:]
    history = Lifecycle(stack.home.store, ROLLOUT_MACHINE).history(done.id)
    steps = [t for t in history if t.to_state == "canary"]
    assert [t.numbers.get("weight") for t in steps[1:]] == [25, 50]  # analyses that passed steps 1, 2
    assert all(t.numbers["analysis"]["passed"] for t in steps[1:])
    drivers = {t.actor for t in history if t.to_state in ("canary", "promoting", "promoted")}
    assert len(drivers) == 2, f"a second controller resumed the rollout: {drivers}"
    judged_2 = next(t for t in steps if t.numbers.get("weight") == 50)
    assert judged_2.numbers["window"]["since"] == in_step_2.data["step_started_at"], (
        "the resumed controller judged step 2 from when it began"
    )
    promoted = _audited(stack.home, done, "promoting")
    assert promoted["weight"] == 100 and promoted["analysis"]["passed"] is True
    assert _audited(stack.home, done, "promoted")["alias_after"] == int(candidate.split("@")[1])

    assert stack.registry.get("support-bot@production").ref == candidate
    stable = [r for r in LocalTarget(stack.home).status("support-bot").replicas if r.track == "stable"]
    assert [r.model_version for r in stable] == [candidate]
    answers = stack.load.between(started, finished + SYNC_S)
    assert len(answers) >= 100
    assert [a for a in answers if a[1] != 200] == [], "no client request failed during the rollout"
    assert _replica_processes(stack.home), "the promoted replicas run"
