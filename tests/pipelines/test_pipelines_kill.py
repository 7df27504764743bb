"""A stage killed with SIGKILL leaves no cache record; the next run redoes that stage only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from llmops.data.versions import DatasetStore
from llmops.store.home import open_home
from llmops.tracking import Tracker

SLOW_STEP = (
    "import os, pathlib, time\n"
    "pathlib.Path('started').write_text('x')\n"
    "time.sleep(float(os.environ.get('STEP_SLEEP', '0')))\n"
    'pathlib.Path(\'rows.jsonl\').write_text(\'{"text": "hello there"}\\n{"text": "general kenobi"}\\n\')\n'
)


def _pipeline(folder: Path) -> Path:
    (folder / "step.py").write_text(SLOW_STEP)
    body = {
        "name": "killable",
        "stages": {
            "synth": {"kind": "data.synth", "params": {"task": "intent", "name": "seed-rows", "n": 20}},
            "export": {
                "kind": "command",
                "after": ["synth"],
                "params": {"run": [sys.executable, "step.py"], "outputs": {"rows": "rows.jsonl"}},
            },
            "ingest": {
                "kind": "data.ingest",
                "params": {"file": "${stages.export.outputs.rows}", "name": "exported"},
            },
        },
    }
    path = folder / "llmops.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def _run(path: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "llmops", "pipeline", "run", str(path), "--lease-seconds", "3"],
        cwd=path.parent,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_sigkill_mid_stage_then_rerun_redoes_only_that_stage(tmp_path: Path) -> None:
    path = _pipeline(tmp_path)
    first = _run(path, STEP_SLEEP="60")
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists():
        assert first.poll() is None, first.communicate()[0]
        assert time.monotonic() < deadline, "the command stage never started"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)

    tracker = Tracker.from_home(open_home())
    stage_runs = tracker.find_runs("pipeline.stage", {"stage": "export"}, status=None)
    assert [r.status for r in stage_runs] == ["RUNNING"] and "cache_key" not in stage_runs[0].tags
    assert not (tmp_path / "rows.jsonl").exists()

    second = _run(path)
    out, _ = second.communicate(timeout=180)
    assert second.returncode == 0, out
    assert "[skip] synth: unchanged" in out
    assert "[run] export (command): never ran" in out
    assert "[run] ingest (data.ingest): never ran" in out
    killed = tracker.get_run(stage_runs[0].id)
    assert killed.status == "KILLED"
    assert [v.version for v in DatasetStore.from_home(open_home()).list_versions("exported")] == [1]
    assert [v.version for v in DatasetStore.from_home(open_home()).list_versions("seed-rows")] == [1]

    third = _run(path)
    out, _ = third.communicate(timeout=180)
    assert third.returncode == 0 and out.count("[skip]") == 3, out
