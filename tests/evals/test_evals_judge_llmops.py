"""LLM-as-judge against a running llmops server: the judge is the replica app over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest
from tests.servers import serving

from llmops.engine.types import (
    Backend,
    EngineStats,
    GenerationRequest,
    HealthStatus,
    ModelInfo,
    TokenEvent,
)
from llmops.evals.metric_base import EvalExample, MetricResources
from llmops.evals.metric_specs import JudgeSpec
from llmops.evals.metrics import build_metrics
from llmops.serve import build_app


class VerdictBackend(Backend):
    """A judge model stand-in: 5 when the answer under review says Paris, else 1, as strict JSON."""

    def info(self) -> ModelInfo:
        return ModelInfo("judge", 4096)

    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        return self._answer(request)

    async def _answer(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        review = (request.messages or ())[-1].content
        answer = review.split("Answer to grade:", 1)[-1]
        score = 5 if "Paris" in answer else 1
        text = json.dumps({"score": score, "reason": "names the capital" if score == 5 else "wrong city"})
        await asyncio.sleep(0)
        yield TokenEvent(request.request_id, 1, text, 10, 1, finish_reason="stop")

    async def abort(self, request_id: str) -> None:
        return None

    async def health(self) -> HealthStatus:
        return HealthStatus(True)

    def stats(self) -> EngineStats:
        return EngineStats()


@pytest.fixture
def llmops_judge() -> Iterator[str]:
    with serving(build_app(VerdictBackend(), "judge")) as url:
        yield f"{url}/v1"


def test_judge_scores_through_a_running_llmops_replica(llmops_judge: str) -> None:
    spec = JudgeSpec(name="judge", base_url=llmops_judge, model="judge", rubric="Names the right capital.")
    (metric,) = build_metrics([spec], MetricResources())
    example = EvalExample(example_id="fr", prompt="What is the capital of France?")
    try:
        good = metric.score("It is Paris.", "Paris", example)
        bad = metric.score("It is Lyon.", "Paris", example)
    finally:
        metric.close()
    assert good.value == 5 and bad.value == 1, (good, bad)
    assert (
        good.judge is not None
        and good.judge.raw_verdict is not None
        and '"score": 5' in good.judge.raw_verdict
    )
    assert good.judge.prompt and "It is Paris." in good.judge.prompt
