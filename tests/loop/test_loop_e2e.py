"""The maintenance loop's whole story on a small model trained here; the deploy target is a recorder.

A champion learns a two-intent task in its original wording. Production traffic then shifts to new
wording; users correct the wrong answers. The drift trigger fires, curation builds a dataset with lineage
to the request ids, the real recipe runner fine-tunes a candidate, the evals runner compares it with
the champion (paired bootstrap), the gate passes, and the real rollout controller takes it through a
canary step (its analysis reads request-log traffic of both arms that a recording target's clock
writes) to promotion. Then two sabotaged cycles: a corrupted training set (the replay data's labels
flipped) is rejected by the gate, and a candidate let through the gate (its comparison numbers chosen
by the test) whose canary answers with errors is rolled back by the controller;
production stays on the promoted version and the audit chain verifies throughout.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from tests.deploy.rollout_fakes import FakeTarget, traffic
from tests.loop.conftest import give_feedback, log_request
from tests.loop.loop_fakes import FakeEvaluator

from llmops.data.versions import DatasetStore
from llmops.deploy.rollout import RolloutController, RolloutEnv
from llmops.deploy.spec import parse_spec
from llmops.loop.config import parse_config
from llmops.loop.evaluation import Evaluator
from llmops.loop.rollout import ControllerRollout
from llmops.loop.service import LoopService
from llmops.monitor.drift_store import profile_from_dataset, save_reference
from llmops.registry import Registry
from llmops.store import audit
from llmops.store.home import Home
from llmops.store.schema import utcnow
from llmops.train.tracked import run_recipe

REPLIES = ("refund", "track")
ORIGINAL = {
    "refund": ("please refund my {item}", "i want my money back for the {item}"),
    "track": ("where is my {item}", "when does my {item} arrive"),
}
SHIFTED = {
    "refund": ("reimburse that {item} now", "return the cash paid for this {item}"),
    "track": ("any news on that {item} shipment", "still waiting on this {item} delivery"),
}
ITEMS = ("lamp", "kettle", "jacket", "chair", "phone", "desk", "clock", "scarf", "bike", "radio")
REWORDED = {
    "refund": ("give back the payment for this {item}", "i paid for the {item} and want it returned"),
    "track": ("has the {item} parcel left the depot", "what is the status of the {item} parcel"),
}
NEW_ITEMS = (
    "kayak",
    "saddle",
    "hammock",
    "drone",
    "tent",
    "piano",
    "rake",
    "globe",
    "canoe",
    "sled",
    "easel",
    "harp",
    "wok",
    "ladder",
    "sofa",
    "bucket",
    "violin",
    "helmet",
    "mixer",
    "tripod",
)

BASE = """
kind: pretrain
name: bot
model: {architecture: llama, hidden_size: 48, intermediate_size: 96, num_layers: 2, num_heads: 2,
        num_kv_heads: 1, max_position_embeddings: 64}
data: {train: orig-train@1, schema: prompt_completion}
tokenizer: {source: train, vocab_size: 300, min_frequency: 1}
optim: {lr: 5.0e-3, warmup_steps: 5, max_steps: 120, batch_size: 16, seed: 0}
max_seq_len: 32
"""
TUNE = """
kind: finetune
model: {base: bot@production}
data: {train: placeholder, schema: prompt_completion}
tokenizer: {source: base}
optim: {lr: 3.0e-3, warmup_steps: 2, max_steps: 50, batch_size: 16, seed: 0}
max_seq_len: 32
"""
SUITE = """
name: original
dataset: orig-test@1
fields: {input: prompt, reference: completion}
generation: {max_tokens: 2, temperature: 0.0}
metrics: [{name: exact_match}]
statistics: {resamples: 500}
"""


def _rows(wording: dict[str, tuple[str, ...]], items: tuple[str, ...]) -> list[dict[str, str]]:
    return [
        {"prompt": template.format(item=item), "completion": reply}
        for reply, templates in wording.items()
        for template in templates
        for item in items
    ]


def _serve_traffic(home: Home, candidate: str, stable: str, errors: int) -> Any:
    """The controller's sleep: while it waits between ticks, both arms answer a batch of requests."""

    def sleep(_: float) -> None:
        now = utcnow()
        traffic(home, candidate, 25, now, arm="canary", errors=errors)
        traffic(home, stable, 25, now, arm="stable")

    return sleep


class World:
    def __init__(self, home: Home, root: Path) -> None:
        self.home, self.root = home, root
        self.registry = Registry.from_home(home)
        self.target = FakeTarget()
        self.canary_errors = 0

    def champion(self) -> str:
        return self.registry.get("bot@production").ref

    def shift(self, count: int, *, seed: int, wording: dict[str, tuple[str, ...]] = SHIFTED) -> set[str]:
        """Shifted traffic to the champion; users correct each answer with the reply they wanted."""
        rng = random.Random(seed)
        rows = _rows(wording, NEW_ITEMS)
        ids = set()
        for row in rng.sample(rows, count):
            request = log_request(self.home, row["prompt"], "track", deployment="bot",
                                  model_version=self.champion(), user=f"user-{rng.randrange(5)}")  # fmt: skip
            give_feedback(self.home, request, thumbs="down", corrected=row["completion"])
            ids.add(request)
        return ids

    def service(self, evaluator: Evaluator | None = None, **changes: Any) -> LoopService:
        config = parse_config(
            {
                "deployment": "bot",
                "model": "bot",
                "triggers": [{"kind": "drift", "window": "1h", "min_window": 30, "cooldown": "1h"}],
                "curation": {
                    "labels": [{"kind": "corrections"}],
                    "dedup": {"exact": True, "near_threshold": 0.9},
                    "replay": {"dataset": "orig-train@1", "share": 0.5},
                    "eval_slice": 0.35,
                    "min_rows": 20,
                    "min_eval_rows": 12,
                },
                "retrain": {"recipe": "tune.yaml"},
                "gate": {"suite": "suite.yaml", "metric": "exact_match", "max_regression": 0.1},
                "rollout": {
                    "steps": [{"weight": 50, "min_duration_s": 0, "min_requests": 20}],
                    "analysis": {"min_samples": 20, "max_online_eval_drop": None},
                    "analysis_interval_s": 0.01,
                },
                **changes,
            },
            base_dir=self.root,
        )
        spec = parse_spec({"name": "bot", "model": "bot@production", "gateway": {"price": {"free": True}}})
        env = RolloutEnv(self.home.store, self.registry, self.target, settle_s=0.0,
                         sleep=self._sleep)  # fmt: skip
        rollout = ControllerRollout(RolloutController(env), spec, actor="loop:bot")
        return LoopService(self.home, config, rollout=rollout, evaluator=evaluator)

    def _sleep(self, _: float) -> None:
        candidate = self.target.tracks.get("canary")
        if candidate is not None:
            _serve_traffic(self.home, candidate, self.champion(), self.canary_errors)(0)

    def audit_ok(self) -> bool:
        with self.home.store.read() as session:
            return audit.verify(session).ok


@pytest.fixture
def world(sqlite_home: Home, tmp_path: Path) -> World:
    home = sqlite_home
    datasets = DatasetStore.from_home(home)
    original = _rows(ORIGINAL, ITEMS)  # 40 rows
    datasets.commit("orig-train", original * 4, "prompt_completion")  # the reference needs 100 prompts
    datasets.commit("orig-test", original, "prompt_completion")
    for name, text in {"base.yaml": BASE, "tune.yaml": TUNE, "suite.yaml": SUITE}.items():
        (tmp_path / name).write_text(text)
    base = run_recipe(home, tmp_path / "base.yaml", output_dir=tmp_path / "base", threads=1,
                      show_progress=False)  # fmt: skip
    registry = Registry.from_home(home)
    registry.set_alias("bot", "production", base.version.version)
    profile = profile_from_dataset(datasets, "orig-train@1")
    save_reference(home.store, home.artifacts, base.version.ref, profile, deployment="bot", actor="test")
    return World(home, tmp_path)


def _numbers(service: LoopService) -> dict[str, dict[str, Any]]:
    (summary, *_) = service.history(limit=1)
    return {t.to_state: t.numbers for t in summary.transitions}


def _story(service: LoopService) -> list[str]:
    """The last cycle's transitions with their reasons: what a failed assertion should show."""
    (summary, *_) = service.history(limit=1)
    return [f"{t.to_state}: {t.reason}" for t in summary.transitions]


@pytest.mark.slow
def test_a_shift_is_learned_gated_canaried_and_promoted_and_sabotage_never_reaches_production(
    world: World,
) -> None:
    champion = world.champion()
    request_ids = world.shift(70, seed=1)
    service = world.service()

    done = service.once()  # shift → trigger → curate → retrain → gate → canary → promote
    assert done.cycle is not None, done.note
    numbers = _numbers(service)
    assert done.cycle.state == "promoted", numbers
    triggered = done.cycle.data["trigger"]
    assert triggered["name"] == "drift" and triggered["fired"]
    # the curated datasets keep lineage down to the request ids they came from
    datasets = DatasetStore.from_home(world.home)
    fresh = datasets.rows(datasets.get(done.cycle.data["fresh_dataset"]))
    train = datasets.rows(datasets.get(done.cycle.data["train_dataset"]))
    curated_ids = {row["request_id"] for row in fresh} | {r["request_id"] for r in train if "request_id" in r}
    assert curated_ids and curated_ids <= request_ids
    assert not {row["request_id"] for row in fresh} & {r.get("request_id") for r in train}
    # better on the fresh slice (interval above zero), not worse on the original suite
    evaluated = numbers["evaluated"]
    assert evaluated["fresh"]["low"] > 0, evaluated["fresh"]
    assert evaluated["original"]["low"] >= -0.1, evaluated["original"]
    assert evaluated["fresh"]["n"] == len(fresh)
    # canary through the real controller, then the alias moved
    assert numbers["promoted"]["rollout_state"] == "promoted"
    assert "canary" in numbers["promoted"]["rollout_steps"]
    promoted = world.champion()
    assert promoted == done.cycle.data["candidate"] != champion
    assert ("apply", "canary", promoted) in world.target.calls
    assert world.audit_ok()

    # traffic shifts again; sabotage 1: the replay data's labels flipped → the gate rejects the
    # candidate for its regression on the original suite, production untouched
    original = datasets.rows(datasets.get("orig-train@1"))
    flipped = [{**row, "completion": REPLIES[row["completion"] == "refund"]} for row in original]
    datasets.commit("orig-train", flipped, "prompt_completion")
    world.shift(70, seed=2, wording=REWORDED)
    curation = service.config.curation.model_dump(mode="json")
    sabotaged = world.service(curation={**curation, "replay": {"dataset": "orig-train@2", "share": 0.9}})
    calls = len(world.target.calls)
    rejected = sabotaged.once(force=True)
    assert rejected.cycle is not None and rejected.cycle.state == "rejected", _story(sabotaged)
    assert _numbers(sabotaged)["rejected"]["passed"] is False
    assert len(world.target.calls) == calls  # nothing was started for it: no traffic reached it
    assert world.champion() == promoted
    assert world.audit_ok()

    # sabotage 2: a candidate the gate let through (its numbers chosen here) that answers with errors
    # in canary → the real controller rolls it back, production untouched
    world.shift(70, seed=3, wording=REWORDED)
    world.canary_errors = 10
    third = world.service(evaluator=FakeEvaluator())
    rolled = third.once(force=True)
    assert rolled.cycle is not None and rolled.cycle.state == "rolled_back", _story(third)
    assert _numbers(third)["gated"]["passed"] is True
    assert world.champion() == promoted
    assert "canary" not in world.target.tracks
    assert world.audit_ok()
