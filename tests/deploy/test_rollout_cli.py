"""`llmops rollout`: status, history and operator signals through the real entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tests.deploy.rollout_fakes import Clock, FakeTarget, registered_versions, spec, two_models

from llmops.deploy.rollout import RolloutController, RolloutEnv
from llmops.store.home import Home


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return two_models(tmp_path_factory.mktemp("models"))


def test_status_history_and_a_manual_rollback(cli, sqlite_home: Home, models: tuple[Path, Path]) -> None:  # type: ignore[no-untyped-def]
    registry = registered_versions(sqlite_home, models)
    env = RolloutEnv(
        sqlite_home.store, registry, FakeTarget(), sleep=lambda s: None, now=Clock().now, settle_s=0
    )
    controller = RolloutController(env)
    run = controller.start(spec([10, 100]), "bot@2", actor="alice")
    controller.tick(run.id)

    status = cli("rollout", "status", "bot")
    assert status.code == 0, status.err
    assert (
        "state: canary" in status.out and "step: 1/2 (10%)" in status.out and "candidate: bot@2" in status.out
    )

    queued = cli("rollout", "rollback", "bot", "--reason", "pager went off")
    assert queued.code == 0 and "rollback queued" in queued.out and env.holder in queued.out
    assert controller.tick(run.id).state == "rolled_back"

    history = cli("rollout", "history", "bot", "--json")
    assert history.code == 0
    assert (
        "manual rollback by tester: pager went off" in history.out
        and '"to_state": "rolled_back"' in history.out
    )
    nothing = cli("rollout", "abort", "bot", "--reason", "x")
    assert nothing.code != 0 and "no rollout in progress" in nothing.err


def test_start_refuses_a_bad_policy_and_an_unknown_target(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec_file = tmp_path / "deployment.yaml"
    spec_file.write_text(yaml.safe_dump(spec([100]).model_dump(mode="json", exclude_unset=True)))
    policy = tmp_path / "policy.yaml"
    policy.write_text("steps: [{weight: 50}, {weight: 10}]\n")
    bad = cli(
        "rollout",
        "start",
        "bot",
        "--candidate",
        "bot@2",
        "--spec",
        spec_file,
        "--policy",
        policy,
        "--target",
        "local",
    )
    assert bad.code != 0 and "weights must strictly increase" in bad.err
    unknown = cli("rollout", "start", "bot", "--candidate", "bot@2", "--spec", spec_file, "--target", "nope")
    assert unknown.code != 0 and "unknown deploy target 'nope'" in unknown.err
    other = cli("rollout", "start", "other", "--candidate", "bot@2", "--spec", spec_file, "--target", "nope")
    assert other.code != 0 and "describes 'bot', not 'other'" in other.err


def test_start_without_spec_uses_the_applied_one(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = cli("rollout", "start", "bot", "--candidate", "bot@2")
    assert missing.code != 0 and "deployment 'bot' is not running" in missing.err
    assert "llmops deploy apply" in missing.err
