"""schemathesis ``--checks all`` against a replica's OpenAPI document: 0 failures.

The backend is the serve tests' fake with a context larger than any generated request: whether a
prompt plus ``max_tokens`` fits the context depends on tokens, which no schema can state (the
replica answers such requests 400, naming ``max_tokens``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.reliability.conftest import FakeBackend
from tests.reliability.schemathesis_run import run_schemathesis

from llmops.engine.types import GenerationRequest, ModelInfo
from llmops.serve import ServeConfig, build_app

pytestmark = pytest.mark.slow


@dataclass
class RoomyBackend(FakeBackend):
    """The fake without its 64-token context (and its failure markers)."""

    def info(self) -> ModelInfo:
        return ModelInfo(model_id="fake/llama", max_model_len=2**62, adapters=("fake-adapter",))

    def _check(self, request: GenerationRequest, words: list[str]) -> None:
        return None


def test_schemathesis_finds_no_failure_in_the_replica(tmp_path: Path) -> None:
    app = build_app(RoomyBackend(delay=0), "fake-model", ServeConfig())
    run = run_schemathesis(app, tmp_path, max_examples=50)
    print(run.output[-3000:])
    assert run.cases > 500, run.output[-3000:]
    assert run.returncode == 0 and run.failures == 0, run.output[-20000:]
