"""Export a pipeline to a CI system: a GitHub Actions workflow or a ``.gitlab-ci.yml`` job.

Both do the same five things: install the project, restore the llmops store (metadata database and
artifact store, so cached stages are skipped), run the pipeline with the very command a person
types, save the store and upload the report (also when the run failed), and fail the job when a
stage or a gate failed (the pipeline exits 1).

By default CI runs every stage up to the deploy stages (``--stage`` names the last ones before
them): a CI runner's cached store has no deployment to roll out on. ``deploy=True`` exports the CD
variant: the whole pipeline, deploy stages included, on pushes to the default branch and manual
runs only, against the production store and gateway named by CI secrets and variables, on a
self-hosted runner (the local deploy target starts replicas where the rollout is driven).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Literal

import yaml

from llmops.pipelines.spec import Pipeline

CiKind = Literal["github", "gitlab"]
STORE_DIR = ".llmops/ci"
REPORTS_DIR = "reports"
REPORT = f"{REPORTS_DIR}/pipeline.md"
EXIT_NOTE = "the pipeline exits 1 when a stage or a gate fails."
DEFAULT_INSTALL = 'python -m pip install --upgrade pip && python -m pip install -e ".[evals]"'


DEPLOY_KINDS = frozenset({"deploy", "rollout"})
# what the CD variant reads from the CI system (secrets for credentials, variables for the rest)
CD_SETTINGS = {
    "LLMOPS_HOME": ("vars", "the production home on the self-hosted runner"),
    "LLMOPS_DATABASE_URL": ("secrets", "the production metadata database"),
    "LLMOPS_GATEWAY_URL": ("vars", "the gateway the replicas register with"),
    "LLMOPS_GATEWAY_KEY": ("secrets", "a deployer key of that gateway"),
}


def ci_stages(pipeline: Pipeline) -> list[str]:
    """The ``--stage`` targets of the CI run: the last stages before any deploy stage.

    Empty when the pipeline has no deploy stage (CI runs all of it).
    """
    shipping = {n for n, s in pipeline.stages.items() if s.kind.kind in DEPLOY_KINDS}
    if not shipping:
        return []
    behind = set().union(*(pipeline.downstream(n) for n in shipping)) | shipping
    kept = [n for n in pipeline.order if n not in behind]
    needed = {dep for n in kept for dep in pipeline.stages[n].depends_on}
    return [n for n in kept if n not in needed]


def run_command(pipeline_file: str, reports: str = REPORTS_DIR, stages: list[str] | None = None) -> list[str]:
    """The command CI runs, as arguments after ``llmops``."""
    targets = [arg for name in stages or [] for arg in ("--stage", name)]
    return ["pipeline", "run", pipeline_file, *targets, "--reports", reports]


def _shell(args: list[str]) -> str:
    return "llmops " + shlex.join(args)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


class _Literal(str):
    """A multi-line string written as a YAML block."""


def _dump(body: dict[str, Any]) -> str:
    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(
        _Literal, lambda dumper, data: dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    )
    return yaml.dump(body, Dumper=Dumper, sort_keys=False, width=200)


def _command(pipeline: Pipeline, file: str, deploy: bool) -> str:
    return _shell(run_command(file, stages=None if deploy else ci_stages(pipeline)))


def github(
    pipeline: Pipeline,
    *,
    root: Path,
    install: str = DEFAULT_INSTALL,
    python: str = "3.11",
    deploy: bool = False,
) -> str:
    file = _relative(pipeline.path, root)
    key = f"llmops-{pipeline.name}"
    cache_key = f"{key}-${{{{ github.ref_name }}}}-${{{{ github.run_id }}}}"
    restore = {
        "name": "Restore the llmops store (metadata and artifacts)",
        "uses": "actions/cache/restore@v5",
        "with": {
            "path": STORE_DIR,
            "key": cache_key,
            "restore-keys": _Literal(f"{key}-${{{{ github.ref_name }}}}-\n{key}-\n"),
        },
    }
    save = {
        "name": "Save the llmops store",
        "if": "always()",
        "uses": "actions/cache/save@v5",
        "with": {"path": STORE_DIR, "key": cache_key},
    }
    steps: list[dict[str, Any]] = [
        {"uses": "actions/checkout@v5"},
        {"uses": "actions/setup-python@v6", "with": {"python-version": python}},
        *([] if deploy else [restore]),
        {"name": "Install", "run": install},
        {"name": "Migrate the store", "run": "llmops init"},
        {"name": "Run the pipeline", "id": "pipeline", "run": _command(pipeline, file, deploy)},
        *([] if deploy else [save]),
        {
            "name": "Upload the report",
            "if": "always()",
            "uses": "actions/upload-artifact@v6",
            "with": {"name": f"{key}-report", "path": f"{REPORTS_DIR}/", "if-no-files-found": "warn"},
        },
    ]
    if not deploy:
        steps.append(
            {
                "name": "Comment the report on the pull request",
                "if": "always() && github.event_name == 'pull_request'",
                "env": {"GH_TOKEN": "${{ github.token }}", "PR": "${{ github.event.pull_request.number }}"},
                "run": f'test -f {REPORT} && gh pr comment "$PR" --body-file {REPORT}',
            }
        )
    env: dict[str, str] = {"OMP_NUM_THREADS": "2"}
    if deploy:
        env.update({name: f"${{{{ {where}.{name} }}}}" for name, (where, _) in CD_SETTINGS.items()})
    else:
        env["LLMOPS_HOME"] = STORE_DIR
    trigger: dict[str, Any] = {"push": {"branches": ["main"]}, "workflow_dispatch": None}
    if not deploy:
        trigger = {"push": {"branches": ["main"]}, "pull_request": None, "workflow_dispatch": None}
    job = {
        "runs-on": "self-hosted" if deploy else "ubuntu-latest",
        "timeout-minutes": 180,
        "env": env,
        "steps": steps,
    }
    body = {
        "name": f"llmops pipeline {pipeline.name}" + (" (deploy)" if deploy else ""),
        "on": trigger,
        "permissions": {"contents": "read"} if deploy else {"contents": "read", "pull-requests": "write"},
        "concurrency": {"group": f"{key}-${{{{ github.ref }}}}", "cancel-in-progress": False},
        "jobs": {"deploy" if deploy else "pipeline": job},
    }
    return _header("github", file, deploy) + _dump(body)


def gitlab(
    pipeline: Pipeline,
    *,
    root: Path,
    install: str = DEFAULT_INSTALL,
    python: str = "3.11",
    deploy: bool = False,
) -> str:
    file = _relative(pipeline.path, root)
    job: dict[str, Any] = {
        "stage": "deploy" if deploy else "pipeline",
        "image": f"python:{python}",
        "variables": {"OMP_NUM_THREADS": "2"},
        "script": [install, "llmops init", _command(pipeline, file, deploy)],
        "artifacts": {
            "when": "always",
            "paths": [f"{REPORTS_DIR}/"],
            "expose_as": "pipeline report",
            "expire_in": "30 days",
        },
    }
    if deploy:
        # LLMOPS_HOME, LLMOPS_DATABASE_URL, LLMOPS_GATEWAY_URL and LLMOPS_GATEWAY_KEY come from the
        # project's CI/CD variables; the `llmops-deploy` tag picks the runner on the serving host
        job["tags"] = ["llmops-deploy"]
        job["resource_group"] = f"llmops-{pipeline.name}-deploy"
        job["rules"] = [
            {"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"},
            {"if": '$CI_PIPELINE_SOURCE == "web"'},
        ]
    else:
        job["variables"]["LLMOPS_HOME"] = f"$CI_PROJECT_DIR/{STORE_DIR}"
        job["cache"] = [
            {"key": f"llmops-{pipeline.name}-$CI_COMMIT_REF_SLUG", "paths": [STORE_DIR], "when": "always"}
        ]
        job["rules"] = [
            {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'},
            {"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"},
            {"if": '$CI_PIPELINE_SOURCE == "web"'},
        ]
    name = f"llmops-{pipeline.name}" + ("-deploy" if deploy else "")
    body = {"stages": [job["stage"]], name: job}
    return _header("gitlab", file, deploy) + _dump(body)


def _header(kind: CiKind, file: str, deploy: bool) -> str:
    flag = " --deploy" if deploy else ""
    what = (
        "runs every stage, deploy included, against the production store (CI secrets/variables: "
        + ", ".join(CD_SETTINGS)
        + ")"
        if deploy
        else "runs the stages up to the deploy stages"
    )
    return f"# Generated by `llmops pipeline export --ci {kind}{flag} {file}`; {what}; {EXIT_NOTE}\n"


def export(
    kind: CiKind, pipeline: Pipeline, *, root: Path, install: str = DEFAULT_INSTALL, deploy: bool = False
) -> str:
    build = github if kind == "github" else gitlab
    return build(pipeline, root=root, install=install, deploy=deploy)


def default_path(kind: CiKind, pipeline: Pipeline, *, deploy: bool = False) -> Path:
    suffix = "-deploy" if deploy else ""
    return (
        Path(".github/workflows") / f"llmops-{pipeline.name}{suffix}.yml"
        if kind == "github"
        else Path(f".gitlab-ci{suffix}.yml")
    )
