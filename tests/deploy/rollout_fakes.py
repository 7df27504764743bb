"""Fakes for rollout tests: a recording DeployTarget, a settable clock, and request-log traffic."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from tests.factories import make_tiny_model

from llmops.deploy.spec import DeploymentSpec, parse_spec
from llmops.deploy.target import DeploymentStatus
from llmops.errors import LLMOpsError, NotFound
from llmops.registry.client import Registry
from llmops.store.home import Home
from llmops.store.schema import GatewayRequest, OnlineEvalResult, utcnow


@dataclass
class FakeTarget:
    """Records every verb; ``fail_apply`` makes ``apply`` fail like a replica that never got ready."""

    calls: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    tracks: dict[str, str] = field(default_factory=dict)
    fail_apply: LLMOpsError | None = None

    def render(self, spec: DeploymentSpec, *, track: str = "stable", model: str | None = None) -> str:
        return f"{spec.name}/{track}: {model or spec.model}"

    def apply(
        self,
        spec: DeploymentSpec,
        *,
        track: str = "stable",
        model: str | None = None,
        replicas: int | None = None,
    ) -> DeploymentStatus:
        self.calls.append(("apply", track, model))
        if self.fail_apply is not None:
            raise self.fail_apply
        self.tracks[track] = model or spec.model
        return self.status(spec.name)

    def status(self, name: str, *, live_metrics: bool = False) -> DeploymentStatus:
        return DeploymentStatus(name=name, model=self.tracks.get("stable", ""), supervisor=None, replicas=[])

    def scale(self, name: str, replicas: int, *, track: str = "stable") -> DeploymentStatus:
        self.calls.append(("scale", track, str(replicas)))
        return self.status(name)

    def drain(self, name: str, *, track: str | None = None) -> DeploymentStatus:
        self.calls.append(("drain", track, None))
        return self.status(name)

    def delete(self, name: str, *, track: str | None = None) -> None:
        self.calls.append(("delete", track, None))
        if track not in self.tracks:
            raise NotFound(f"{name} has no {track} track")
        del self.tracks[track]


class Clock:
    def __init__(self) -> None:
        self.t = utcnow()

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


def two_models(tmp: Path) -> tuple[Path, Path]:
    return make_tiny_model(tmp / "v1", seed=0), make_tiny_model(tmp / "v2", seed=1)


def registered_versions(
    home: Home, models: tuple[Path, Path], *, gates_passed: bool | None = True
) -> Registry:
    """``bot@1`` (alias production) and ``bot@2`` (the candidate, with stored gates if asked)."""
    registry = Registry.from_home(home)
    registry.register(models[0], "bot")
    registry.register(models[1], "bot")
    registry.set_alias("bot", "production", 1)
    if gates_passed is not None:
        report = {
            "passed": gates_passed,
            "gates": [{"name": "acc", "passed": gates_passed, "reason": "acc >= 0.5"}],
        }
        registry.merge_tags("bot@2", {"gates/smoke": report})
    return registry


def spec(steps: list[float], *, min_requests: int = 20, **analysis: object) -> DeploymentSpec:
    thresholds = {"min_samples": 20, "max_online_eval_drop": None, **analysis}
    return parse_spec(
        {
            "name": "bot",
            "model": "bot@production",
            "gateway": {"price": {"free": True}},
            "rollout": {
                "steps": [{"weight": w, "min_duration_s": 1, "min_requests": min_requests} for w in steps],
                "analysis": thresholds,
                "analysis_interval_s": 0.01,
            },
        }
    )


def traffic(
    home: Home,
    version: str,
    n: int,
    at: datetime,
    *,
    arm: str,
    errors: int = 0,
    latency_ms: float = 100.0,
    online_score: float | None = None,
) -> None:
    """``n`` logged requests of ``version`` at time ``at`` (the first ``errors`` answered 502)."""
    with home.store.transaction() as session:
        for i in range(n):
            request_id = f"req-{uuid.uuid4().hex[:16]}"
            status = 502 if i < errors else 200
            session.add(
                GatewayRequest(
                    id=request_id, ts=at, endpoint="chat", deployment="bot", model_version=version, arm=arm,
                    stream=False, prompt_tokens=3, completion_tokens=3, ttft_ms=latency_ms / 4,
                    latency_ms=latency_ms * (1 + (i % 7) / 20), status=status, cost_usd=0.0, cache_hit=False,
                )
            )  # fmt: skip
            if online_score is not None and status == 200:
                session.add(
                    OnlineEvalResult(
                        request_id=request_id,
                        metric="m",
                        model_version=version,
                        value=online_score,
                        scored_at=at,
                    )
                )
