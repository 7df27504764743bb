"""The `deploy` stage through `llmops pipeline run`: the real rollout controller on a recording
target that also plays the gateway (it logs the candidate's and stable's traffic when the canary
starts), so a good candidate is promoted, a bad one rolled back, a refused one never started."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from tests.deploy.rollout_fakes import FakeTarget, registered_versions, spec, traffic, two_models

from llmops.deploy import targets
from llmops.deploy.rollout_state import ROLLOUT_MACHINE
from llmops.deploy.spec import DeploymentSpec
from llmops.deploy.target import DeploymentStatus
from llmops.store.home import Home
from llmops.store.lifecycle import Lifecycle
from llmops.store.schema import utcnow


class ServingTarget(FakeTarget):
    """A recording target whose canary answers ``requests`` requests (``errors`` of them 502)."""

    home: Home | None = None
    errors: int = 0
    requests: int = 30

    def apply(
        self,
        spec: DeploymentSpec,
        *,
        track: str = "stable",
        model: str | None = None,
        replicas: int | None = None,
    ) -> DeploymentStatus:
        status = super().apply(spec, track=track, model=model, replicas=replicas)
        if track == "canary" and self.home is not None:
            # inside the step the controller enters next: a step waits for its requests, so a time
            # well after the apply stays inside it however slowly a loaded machine gets there
            at = utcnow() + timedelta(seconds=1.5)
            traffic(self.home, model or spec.model, self.requests, at, arm="canary", errors=self.errors)
            # a lone 100% step judges stable over an equally long window just before the step
            before = utcnow() - timedelta(seconds=0.5)
            traffic(self.home, "bot@1", self.requests, before, arm="stable")
        return status


TARGET = ServingTarget()


def open_serving_target(home: Home) -> ServingTarget:
    TARGET.home = home
    return TARGET


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return two_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(autouse=True)
def serving_target(monkeypatch: pytest.MonkeyPatch) -> ServingTarget:
    monkeypatch.setitem(targets.TARGETS, "serving", f"{__name__}:open_serving_target")
    TARGET.calls.clear()
    TARGET.tracks.clear()
    TARGET.errors, TARGET.requests = 0, 30
    return TARGET


def _pipeline(tmp_path: Path, **deploy: object) -> Path:
    (tmp_path / "deployment.yaml").write_text(
        yaml.safe_dump(spec([100]).model_dump(mode="json", exclude_unset=True))
    )
    params = {
        "spec": "deployment.yaml",
        "candidate": "bot@2",
        "target": "serving",
        "settle_s": 0,
        "timeout_s": 120,  # a rollout that never ends fails the stage well inside the test's limit
        **deploy,
    }
    body = {"name": "ship", "stages": {"deploy": {"kind": "deploy", "params": params}}}
    path = tmp_path / "llmops.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def _run(cli, file: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    return cli("pipeline", "run", file, "--reports", tmp_path / "reports")


def _outputs(home: Home) -> dict[str, str]:
    record = Lifecycle(home.store, ROLLOUT_MACHINE).latest("bot")
    assert record is not None
    return {"rollout": record.id, "state": record.state}


def test_a_good_candidate_is_promoted_and_the_stage_is_then_cached(
    cli, sqlite_home: Home, models: tuple[Path, Path], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    registry = registered_versions(sqlite_home, models)
    file = _pipeline(tmp_path)
    first = _run(cli, file, tmp_path)
    assert first.code == 0, first.out + first.err
    rollout = _outputs(sqlite_home)
    assert rollout["state"] == "promoted"
    assert f"[done] deploy: rollout {rollout['rollout'][:12]} of bot@2 on bot: promoted" in first.out
    assert registry.get("bot@production").version == 2
    assert ("apply", "canary", "bot@2") in TARGET.calls and ("apply", "stable", "bot@2") in TARGET.calls
    report = (tmp_path / "reports" / "pipeline.md").read_text()
    assert f"rollout={rollout['rollout']}, state=promoted" in report

    again = _run(cli, file, tmp_path)
    assert again.code == 0 and "[skip] deploy: unchanged (key" in again.out, again.out


def test_a_rolled_back_rollout_fails_the_stage_with_its_reason(
    cli, sqlite_home: Home, models: tuple[Path, Path], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    registry = registered_versions(sqlite_home, models)
    TARGET.errors = 15
    result = _run(cli, _pipeline(tmp_path), tmp_path)
    assert result.code == 1, result.out
    rollout = _outputs(sqlite_home)
    assert rollout["state"] == "rolled_back"
    assert f"[FAILED] deploy: rollout {rollout['rollout'][:12]} of bot@2 on bot: rolled_back:" in result.out
    assert "error_rate_increase" in result.out
    assert registry.get("bot@production").version == 1 and "canary" not in TARGET.tracks
    shown = cli("pipeline", "list")
    detail = cli("pipeline", "show", shown.out.split()[0], "--json")
    assert '"state": "rolled_back"' in detail.out and rollout["rollout"] in detail.out


def test_a_candidate_whose_gates_failed_is_refused_before_anything_starts(
    cli, sqlite_home: Home, models: tuple[Path, Path], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    registered_versions(sqlite_home, models, gates_passed=False)
    result = _run(cli, _pipeline(tmp_path), tmp_path)
    assert result.code == 1, result.out
    assert _outputs(sqlite_home)["state"] == "refused"
    refused = "refused: candidate bot@2 refused: evaluation gates of suite 'smoke' failed"
    assert refused in result.out, result.out
    assert TARGET.calls == []


def test_detach_only_starts_the_rollout_for_the_controller(
    cli, sqlite_home: Home, models: tuple[Path, Path], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    registered_versions(sqlite_home, models)
    result = _run(cli, _pipeline(tmp_path, detach=True), tmp_path)
    assert result.code == 0, result.out
    record = Lifecycle(sqlite_home.store, ROLLOUT_MACHINE).latest("bot")
    assert record is not None and record.state == "starting" and not record.lease_live()
    assert "detached: `llmops rollout controller` drives it" in result.out and TARGET.calls == []


def test_a_rollout_still_going_at_the_timeout_fails_the_stage_and_a_rerun_attaches(
    cli, sqlite_home: Home, models: tuple[Path, Path], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    registry = registered_versions(sqlite_home, models)
    TARGET.requests = 5  # fewer than the step's 20: the step waits for more
    file = _pipeline(tmp_path, timeout_s=1.5)
    first = _run(cli, file, tmp_path)
    assert first.code == 1 and "is still canary after the stage's timeout_s" in first.out, first.out
    record = Lifecycle(sqlite_home.store, ROLLOUT_MACHINE).latest("bot")
    assert record is not None and not record.terminal and not record.lease_live()  # left to a controller
    TARGET.requests = 30
    traffic(sqlite_home, "bot@2", 30, utcnow(), arm="canary")
    traffic(sqlite_home, "bot@1", 30, record.created_at, arm="stable")  # before the lone 100% step
    second = _run(cli, file, tmp_path)
    assert second.code == 0, second.out
    assert f"rollout {record.id[:12]} of bot@2 on bot is live (canary): attaching" in second.out
    assert _outputs(sqlite_home) == {"rollout": record.id, "state": "promoted"}
    assert registry.get("bot@production").version == 2
