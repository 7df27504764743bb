"""A home holding what a loop names: a deployment's logged traffic, a champion with its alias, the
original datasets, a suite and a recipe; and helpers that write traffic and feedback."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from llmops.data.versions import DatasetStore
from llmops.registry import Registry
from llmops.store.home import Home
from llmops.store.schema import GatewayRequest, OnlineEvalResult, RequestFeedback

SUITE = """
name: original
dataset: orig-test@1
fields: {input: prompt, reference: completion}
generation: {max_tokens: 4, temperature: 0.0}
metrics: [{name: exact_match}]
statistics: {resamples: 200}
"""
RECIPE = """
kind: finetune
name: bot
model: {base: bot@production}
data: {train: placeholder, schema: prompt_completion}
tokenizer: {source: base}
optim: {lr: 1.0e-3, warmup_steps: 0, max_steps: 2, batch_size: 4, seed: 0}
max_seq_len: 32
"""


def log_request(
    home: Home,
    prompt: str,
    completion: str,
    *,
    user: str | None = None,
    at: datetime | None = None,
    deployment: str = "bot",
    model_version: str = "bot@1",
) -> str:
    request_id = f"req_{uuid.uuid4().hex[:20]}"
    with home.store.transaction() as session:
        session.add(
            GatewayRequest(
                id=request_id,
                ts=at or datetime.now(UTC),
                key_id="key_x",
                user=user,
                endpoint="chat",
                deployment=deployment,
                model_version=model_version,
                stream=False,
                prompt=prompt,
                completion=completion,
                prompt_tokens=len(prompt.split()),
                completion_tokens=len(completion.split()),
                latency_ms=3.0,
                status=200,
                cost_usd=0.0,
                cache_hit=False,
            )
        )
    return request_id


def give_feedback(
    home: Home,
    request_id: str,
    *,
    thumbs: str | None = None,
    score: float | None = None,
    corrected: str | None = None,
    at: datetime | None = None,
) -> None:
    with home.store.transaction() as session:
        session.add(
            RequestFeedback(
                id=f"fb_{uuid.uuid4().hex[:24]}",
                request_id=request_id,
                model_version="bot@1",
                key_id="key_x",
                score=score,
                thumbs=thumbs,
                corrected_output=corrected,
                created_at=at or datetime.now(UTC),
            )
        )


def online_score(home: Home, request_id: str, value: float, *, at: datetime, metric: str = "refusal") -> None:
    with home.store.transaction() as session:
        session.add(
            OnlineEvalResult(
                request_id=request_id,
                metric=metric,
                model_version="bot@1",
                value=value,
                raw_value=value,
                error=None,
                scored_at=at,
            )
        )


@dataclass
class LoopWorld:
    home: Home
    root: Path
    config: dict[str, Any]

    def write_config(self, **changes: Any) -> Path:
        import yaml

        path = self.root / "loop.yaml"
        path.write_text(yaml.safe_dump({**self.config, **changes}))
        return path


def hours_ago(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


@pytest.fixture
def world(sqlite_home: Home, tiny_model_dir: Path, tmp_path: Path) -> LoopWorld:
    home = sqlite_home
    registry = Registry.from_home(home)
    version = registry.register(tiny_model_dir, "bot")
    registry.set_alias("bot", "production", version.version)
    datasets = DatasetStore.from_home(home)
    rows = [{"prompt": f"order {i} status", "completion": f"shipped {i}"} for i in range(40)]
    datasets.commit("orig-train", rows, "prompt_completion")
    datasets.commit("orig-test", rows[:10], "prompt_completion")
    (tmp_path / "suite.yaml").write_text(SUITE)
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    log_request(home, "hello", "hi")  # the deployment has traffic, so the store knows it
    config: dict[str, Any] = {
        "deployment": "bot",
        "model": "bot",
        "triggers": [{"kind": "schedule", "every": "1d"}],
        "curation": {
            "labels": [{"kind": "corrections"}, {"kind": "thumbs_up"}],
            "replay": {"dataset": "orig-train@1", "share": 0.25},
            "eval_slice": 0.3,
            "min_rows": 10,
            "min_eval_rows": 4,
        },
        "retrain": {"recipe": "recipe.yaml", "method": "full"},
        "gate": {"suite": "suite.yaml", "metric": "exact_match"},
        "rollout": {"steps": [{"weight": 100, "min_duration_s": 0, "min_requests": 1}]},
    }
    return LoopWorld(home, tmp_path, config)


Logger = Callable[..., str]
