"""schemathesis ``--checks all`` against a replica's OpenAPI document: 0 failures.

The backend is the serve tests' fake with a context larger than any generated request: whether a
prompt plus ``max_tokens`` fits the context depends on tokens, which no schema can state (the
replica answers such requests 400, naming ``max_tokens``). It also classifies, so that every route
of the document is exercised with answers (a decoder answers ``/v1/classify`` 400, naming ``model``:
that is what a model cannot do, not what a body says, and is tested in the serve tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.reliability.conftest import FakeBackend
from tests.reliability.schemathesis_run import run_schemathesis

from llmops.engine.types import Classification, GenerationRequest, ModelInfo
from llmops.serve import ServeConfig, build_app

pytestmark = pytest.mark.slow


@dataclass
class RoomyBackend(FakeBackend):
    """The fake without its 64-token context (and its failure markers)."""

    def info(self) -> ModelInfo:
        return ModelInfo(model_id="fake/llama", max_model_len=2**62, adapters=("fake-adapter",))

    def _check(self, request: GenerationRequest, words: list[str]) -> None:
        return None

    async def classify(self, texts: list[str]) -> list[Classification]:
        """``long`` for texts of more than three words, else ``short``."""
        out = []
        for text in texts:
            words = len(text.split())
            p_long = 0.9 if words > 3 else 0.1
            label = "long" if words > 3 else "short"
            out.append(Classification(label, {"long": p_long, "short": 1 - p_long}, words))
        return out


def test_schemathesis_finds_no_failure_in_the_replica(tmp_path: Path) -> None:
    app = build_app(RoomyBackend(delay=0), "fake-model", ServeConfig())
    run = run_schemathesis(app, tmp_path, max_examples=50)
    print(run.output[-3000:])
    assert run.cases > 500, run.output[-3000:]
    assert run.returncode == 0 and run.failures == 0, run.output[-20000:]
