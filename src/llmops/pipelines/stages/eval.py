"""`eval`: run an evaluation suite on a model version; the gates are stored on the version.

The suite's dataset can be replaced by the pipeline's (so the evaluation reads the exact split the
pipeline made). Gates that compare with an alias (``no_regression_vs: production``) make the alias's
version an input: when the champion moves to another version, the evaluation is redone (the
champion becoming this very version changes nothing: "none" stands for "no other champion").
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from llmops.errors import InvalidInput, LLMOpsError, NotFound
from llmops.evals.suite import load_suite
from llmops.pipelines.stages.base import StageContext, StageKind, StageOutcome, StageParams
from llmops.pipelines.stages.data_common import dataset_digest
from llmops.registry import Registry
from llmops.security.yaml_input import load_yaml
from llmops.tracking import Tracker


class EvalParams(StageParams):
    suite: str = Field(description="Suite YAML, relative to the pipeline file.")
    model: str = Field(description="Model reference to evaluate, e.g. `${stages.train.outputs.model}`.")
    dataset: str | None = Field(None, description="Dataset reference replacing the suite's `dataset`.")
    limit: int | None = Field(None, ge=1, description="Evaluate only the first N examples.")


def suite_text(ctx: StageContext, params: EvalParams) -> str:
    """The suite as the stage runs it (the file, with the pipeline's dataset)."""
    path = ctx.path(params.suite)
    try:
        body: Any = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(
            f"stage {ctx.stage!r}: params.suite: cannot read {path}: {exc}", param="suite"
        ) from None
    if not isinstance(body, dict):
        raise InvalidInput(f"stage {ctx.stage!r}: params.suite: {path} is not a mapping", param="suite")
    if params.dataset:
        body["dataset"] = params.dataset
    return yaml.safe_dump(body, sort_keys=False)


class Eval(StageKind):
    kind = "eval"
    params = EvalParams
    outputs = ("run", "model", "passed")
    summary = "Evaluate a model version on a suite; store the run and its gate results."

    def fingerprint(self, ctx: StageContext, params: StageParams) -> dict[str, str]:
        assert isinstance(params, EvalParams)
        text = suite_text(ctx, params)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "suite.yaml").write_text(text)
            suite = load_suite(Path(tmp) / "suite.yaml")
        registry = Registry.from_home(ctx.home)
        model = registry.get(params.model)
        digests = {"suite": suite.name, "model": model.digest, "dataset": dataset_digest(ctx, suite.dataset)}
        for gate in suite.gates:
            if gate.no_regression_vs:
                try:
                    champion = registry.get(f"{model.name}@{gate.no_regression_vs}").digest
                except NotFound:
                    champion = "none"
                # Once this very version is promoted, its stored evaluation still stands.
                digests[f"baseline {gate.no_regression_vs}"] = (
                    "none" if champion == model.digest else champion
                )
        return digests

    def run(self, ctx: StageContext, params: StageParams) -> StageOutcome:
        assert isinstance(params, EvalParams)
        from llmops.evals.runner import EvalRunner

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "suite.yaml"
            path.write_text(suite_text(ctx, params))
            result = EvalRunner(ctx.home, env=dict(ctx.env)).run(path, params.model, limit=params.limit)
        passed = "none" if result.gates is None else str(result.gates.passed).lower()
        scores = ", ".join(
            f"{m.info.metric_id} {m.score:.4g}" for m in result.summary.metrics if m.score is not None
        )
        outputs = {"run": result.run_id, "model": result.model.ref, "passed": passed}
        return StageOutcome(outputs, message=f"{result.model.ref} on {result.suite.name}: {scores}")

    def still_valid(self, ctx: StageContext, params: StageParams, outputs: Mapping[str, str]) -> str | None:
        try:
            Tracker.from_home(ctx.home).get_run(outputs["run"])
        except LLMOpsError as exc:
            return f"evaluation run {outputs.get('run')} is gone: {exc.message}"
        return None


STAGE = Eval()
