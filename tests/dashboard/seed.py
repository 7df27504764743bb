"""A store with one of everything the dashboard shows, made through the project's own APIs.

Two tiny registered versions of ``bot`` (v1 production, v2 the candidate with gates), a dataset and
a training run with a loss curve, an evaluation of each version on one suite, request-log traffic
from two consumer keys (one carrying planted markup), a rollout in its canary step with analysis
numbers, a finished pipeline run and a loop cycle, and keys for every role. Strings that must be
shown as text, never as markup, are in ``XSS``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from tests.deploy.rollout_fakes import Clock, FakeTarget, registered_versions, spec, traffic, two_models

from llmops.data.versions import DatasetStore
from llmops.deploy.rollout import RolloutController, RolloutEnv
from llmops.evals.generation import Generation, Prompt
from llmops.evals.runner import EvalRunner
from llmops.evals.suite import GenerationParams
from llmops.loop.states import CYCLE_MACHINE
from llmops.monitor.drift import DriftReport, FeatureDrift
from llmops.monitor.drift_store import save_report
from llmops.pipelines.lock import PIPELINE_MACHINE
from llmops.security.keys import KeySpec, KeyStore
from llmops.security.roles import Role
from llmops.store.home import Home
from llmops.store.lifecycle import Lifecycle
from llmops.store.schema import GatewayRequest, RequestFeedback, utcnow
from llmops.tracking.client import Tracker

HISTORY_HOURS, HISTORY_PER_HOUR = 23, 10  # 230 requests over the day before the rollout
SCRIPT = "<script>window.__xss = 1</script>"
IMG = '"><img src=x onerror="window.__xss = 2">'
XSS = (SCRIPT, IMG)
SUITE = """
name: qa
dataset: qa@1
fields: {input: prompt, reference: completion}
generation: {max_tokens: 4, temperature: 0.0}
metrics:
  - {name: exact_match}
gates:
  - {metric: exact_match, min: 0.5}
statistics: {resamples: 200}
"""


@dataclass
class Seeded:
    home: Home
    keys: dict[str, str]  # role label (and "other") -> raw key
    key_ids: dict[str, str]
    rollout_id: str = ""
    eval_run_ids: list[str] = field(default_factory=list)
    train_run_id: str = ""
    xss_request_id: str = ""
    other_request_id: str = ""


class ScriptedGenerator:
    """Right on all but every ``wrong_every``-th example; a wrong answer carries planted markup."""

    def __init__(self, wrong_every: int) -> None:
        self.wrong_every = wrong_every

    def generate(
        self, prompts: Sequence[Prompt], params: GenerationParams, *, score_reference: bool = False
    ) -> list[Generation]:
        out = []
        for i, prompt in enumerate(prompts):
            right = i % self.wrong_every != 0
            out.append(Generation(prompt.reference if right else f"wrong {IMG}", 2, 0.01, 100.0))
        return out


def _keys(home: Home) -> tuple[dict[str, str], dict[str, str]]:
    store = KeyStore.from_home(home)
    raw, ids = {}, {}
    for label, role in (("admin", Role.ADMIN), ("deployer", Role.DEPLOYER), ("developer", Role.DEVELOPER),
                        ("consumer", Role.CONSUMER), ("other", Role.CONSUMER)):  # fmt: skip
        created = store.create(KeySpec(name=f"{label} key", role=role, budget_usd=5.0), actor="seed")
        raw[label], ids[label] = created.key, created.record.id
    return raw, ids


def _training(home: Home) -> str:
    rows = [{"prompt": f"question {i} {SCRIPT}", "completion": f"answer {i}"} for i in range(40)]
    DatasetStore.from_home(home).commit("qa", rows, "prompt_completion", source=f"upload {IMG}")
    with Tracker.from_home(home).start_run(
        "train", f"fine-tune {IMG}", params={"lr": 0.001, "note": SCRIPT}
    ) as run:
        for step in range(20):
            run.log_metric("loss", 3.0 / (step + 1), step=step)
    return run.id


def _evaluations(home: Home, tmp: Path) -> list[str]:
    suite = tmp / "suite.yaml"
    suite.write_text(SUITE)
    registry_digests = {}
    from llmops.registry.client import Registry

    registry = Registry.from_home(home)
    for ref, wrong_every in (("bot@1", 10), ("bot@2", 4)):
        registry_digests[registry.local_path(ref).name] = wrong_every
    runner = EvalRunner(home, generator_factory=lambda path: ScriptedGenerator(registry_digests[path.name]))
    return [runner.run(suite, "bot@1").run_id, runner.run(suite, "bot@2").run_id]


def _request(home: Home, key_id: str, prompt: str, *, deployment: str = "bot", version: str = "bot@1") -> str:
    request_id = f"req-{uuid.uuid4().hex[:16]}"
    with home.store.transaction() as session:
        session.add(
            GatewayRequest(
                id=request_id, ts=utcnow(), key_id=key_id, user="u-1", endpoint="chat",
                deployment=deployment, model_version=version, arm="stable", stream=True, prompt=prompt,
                completion=f"reply {IMG}", prompt_tokens=5, completion_tokens=7, ttft_ms=40.0,
                latency_ms=120.0, status=200, cost_usd=0.0125, cache_hit=False,
            )
        )  # fmt: skip
        session.add(
            RequestFeedback(
                id=uuid.uuid4().hex[:16],
                request_id=request_id,
                model_version=version,
                thumbs="up",
                comment=SCRIPT,
            )
        )
    return request_id


def _rollout(home: Home) -> str:
    from llmops.registry.client import Registry

    clock, target = Clock(), FakeTarget()
    env = RolloutEnv(
        home.store, Registry.from_home(home), target, sleep=lambda s: None, now=clock.now, settle_s=0.0
    )  # type: ignore[arg-type]
    controller = RolloutController(env)
    run = controller.start(spec([10, 50, 100]), "bot@2", actor="seed", reason="a better bot")
    controller.tick(run.id)  # starting -> step 1
    at = clock.now()
    traffic(home, "bot@2", 30, at, arm="canary", online_score=0.7)
    traffic(home, "bot@1", 30, at, arm="stable", online_score=0.8)
    clock.advance(1.5)
    controller.tick(run.id)  # step 1 judged -> step 2, with its analysis numbers
    controller.runs.release(run.id, env.holder)  # left for an operator: active, no driver
    return run.id


def _history(home: Home) -> None:
    """A day of stable traffic before the rollout, one batch an hour, some of it failing."""
    now = utcnow()
    for hour in range(1, HISTORY_HOURS + 1):
        at = now - timedelta(hours=hour, minutes=7)
        traffic(
            home,
            "bot@1",
            HISTORY_PER_HOUR,
            at,
            arm="stable",
            errors=hour % 3,
            latency_ms=90.0 + 4 * (hour % 6),
        )


def _drift(home: Home) -> None:
    feature = FeatureDrift(
        feature="prompt_length",
        method="psi+ks",
        score=0.31,
        threshold=0.2,
        p_value=0.001,
        alpha=0.05,
        drifted=True,
    )
    report = DriftReport(
        model_version="bot@1", checked_at=utcnow(), reference_source="dataset qa@1", reference_samples=40,
        window_samples=230, drifted=True, features=[feature],
    )  # fmt: skip
    save_report(home.store, report)


def _lifecycles(home: Home) -> None:
    pipelines = Lifecycle(home.store, PIPELINE_MACHINE)
    run = pipelines.create("train-and-gate", actor="seed", holder="seed", data={"stages": ["train", "eval"]})
    pipelines.transition(
        run.id, "seed", "succeeded", actor="seed", reason="every stage passed", numbers={"stages": 2}
    )
    cycles = Lifecycle(home.store, CYCLE_MACHINE)
    cycle = cycles.create("support", actor="loop", holder="loop", data={})
    cycles.transition(
        cycle.id, "loop", "stopped", actor="loop", reason="no new labelled rows", numbers={"rows": 0}
    )


def seed_store(home: Home, tmp: Path) -> Seeded:
    """Fill ``home`` with every kind of record the dashboard shows (tiny models built in ``tmp``)."""
    raw, ids = _keys(home)
    seeded = Seeded(home, raw, ids)
    seeded.train_run_id = _training(home)
    registered_versions(home, two_models(tmp))
    seeded.eval_run_ids = _evaluations(home, tmp)
    seeded.rollout_id = _rollout(home)
    _history(home)
    seeded.xss_request_id = _request(
        home, ids["consumer"], f"hello {SCRIPT} {IMG}", deployment=f"bot{IMG}", version=f"bot@1{SCRIPT}"
    )
    seeded.other_request_id = _request(home, ids["other"], "the other tenant's secret prompt")
    _drift(home)
    _lifecycles(home)
    return seeded
