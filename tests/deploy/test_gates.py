"""The one deploy-time gate check: what the rollout controller and the supervisor both ask."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.deploy.rollout_fakes import registered_versions, two_models

from llmops.deploy.gates import require_gate
from llmops.deploy.policy import RolloutPolicy
from llmops.errors import InvalidInput
from llmops.store.home import Home


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return two_models(tmp_path_factory.mktemp("models"))


def test_failed_gates_refuse_even_a_stable_track(sqlite_home: Home, models: tuple[Path, Path]) -> None:
    registry = registered_versions(sqlite_home, models, gates_passed=False)
    with pytest.raises(InvalidInput) as caught:
        require_gate(registry, "bot@2", RolloutPolicy(), unevaluated_ok=True)
    assert caught.value.code == "gates_failed" and "suite 'smoke' failed: acc >= 0.5" in caught.value.message
    assert require_gate(registry, "bot@2", RolloutPolicy(require_passed_gates=False), unevaluated_ok=False)


def test_an_unevaluated_version_may_be_stable_but_never_a_candidate(
    sqlite_home: Home, models: tuple[Path, Path]
) -> None:
    registry = registered_versions(sqlite_home, models, gates_passed=None)
    assert require_gate(registry, "bot@production", RolloutPolicy(), unevaluated_ok=True) == "bot@1"
    with pytest.raises(InvalidInput) as caught:
        require_gate(registry, "bot@2", RolloutPolicy(), unevaluated_ok=False)
    assert "no stored evaluation gates" in caught.value.message
