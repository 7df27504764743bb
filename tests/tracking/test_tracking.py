from __future__ import annotations

from pathlib import Path

import pytest

from llmops import tracking
from llmops.errors import InvalidInput, NotFound
from llmops.store.home import Home
from llmops.tracking import Tracker


def test_run_lifecycle_params_metrics_artifacts(home: Home, tmp_path: Path) -> None:
    tracker = Tracker.from_home(home)
    (tmp_path / "report.txt").write_text("ok")
    with tracker.start_run("pretrain", "tiny", params={"lr": 3e-4, "layers": 2}, tags={"team": "a"}) as run:
        for step in range(2000):
            run.log_metric("loss", 10.0 / (step + 1), step=step)
        run.log_metrics({"val_loss": 1.5, "acc": 0.9}, step=2000)
        digest = run.log_artifact(tmp_path / "report.txt")
    info = tracker.get_run(run.id)
    assert info.status == "FINISHED" and info.ended_at is not None
    assert info.params == {"lr": "0.0003", "layers": "2"}
    assert info.tags == {"team": "a"}
    assert info.latest_metrics["loss"] == pytest.approx(10.0 / 2000)
    assert info.latest_metrics["val_loss"] == 1.5
    assert info.artifacts == {"report.txt": digest}
    history = tracker.metric_history(run.id, "loss")
    assert [p.step for p in history] == list(range(2000))


def test_exception_marks_run_failed(home: Home) -> None:
    tracker = Tracker.from_home(home)
    with pytest.raises(ValueError), tracker.start_run("exp") as run:
        raise ValueError("diverged")
    info = tracker.get_run(run.id)
    assert info.status == "FAILED" and "diverged" in (info.error or "")


def test_metric_steps_default_to_increasing(sqlite_home: Home) -> None:
    with Tracker.from_home(sqlite_home).start_run("exp") as run:
        for value in (3.0, 2.0, 1.0):
            run.log_metric("loss", value)
    points = Tracker.from_home(sqlite_home).metric_history(run.id, "loss")
    assert [(p.step, p.value) for p in points] == [(0, 3.0), (1, 2.0), (2, 1.0)]


def test_module_level_start_run_uses_default_home() -> None:
    with tracking.start_run("quick", "r1") as run:
        run.log_metric("x", 1.0, step=1)
    assert run.info().latest_metrics == {"x": 1.0}


def test_bad_input(sqlite_home: Home) -> None:
    tracker = Tracker.from_home(sqlite_home)
    with pytest.raises(InvalidInput):
        tracker.start_run("  ")
    with pytest.raises(NotFound, match="runs list"):
        tracker.get_run("nope")


def test_cli_lists_and_shows_runs(cli) -> None:  # type: ignore[no-untyped-def]
    with tracking.start_run("cli-exp", "first", params={"seed": 7}) as run:
        run.log_metric("loss", 0.25, step=3)
    listed = cli("runs", "list")
    assert listed.code == 0 and run.id[:12] in listed.out and "cli-exp" in listed.out
    shown = cli("runs", "show", run.id[:10])
    assert shown.code == 0 and "seed" in shown.out and "0.25" in shown.out and "FINISHED" in shown.out
    missing = cli("runs", "show", "zzz")
    assert missing.code == 2 and "no run" in missing.err
