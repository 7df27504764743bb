"""`gate`: the release decision, read from the evaluations' stored gate results.

For each evaluation run it reads the gate results stored on the model version by the evaluation
(``gates/SUITE``), adds the pipeline's own thresholds (latency, safety ...) on the run's scores,
and compares the candidate with the champion (the ``against`` alias) on the same suite. It writes a
markdown summary (scores with intervals, the comparison's verdicts, every gate with its numbers)
for a pull-request comment. A failed gate fails the stage, which blocks every stage after it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from llmops.errors import LLMOpsError, NotFound
from llmops.evals.gates import GateInputs, GateReport, GateResult, evaluate_gates
from llmops.evals.report import render_comparison_markdown, render_gates_markdown, render_summary_markdown
from llmops.evals.results import Comparison
from llmops.evals.stats import compare_runs
from llmops.evals.storage import gates_from_json
from llmops.evals.suite import GateSpec
from llmops.pipelines.stages.base import StageContext, StageKind, StageOutcome, StageParams
from llmops.registry import Registry
from llmops.tracking import Tracker

if TYPE_CHECKING:
    from llmops.evals.runner import EvalRun, EvalRunner


class Threshold(GateSpec):
    """An extra gate on one metric's run score (``min`` or ``max``), e.g. latency or safety."""

    suite: str | None = Field(None, description="Apply to this suite only (default: every evaluation).")


class GateParams(StageParams):
    evals: list[str] = Field(min_length=1, description="Evaluation run ids: `${stages.NAME.outputs.run}`.")
    against: str = Field("production", description="Champion alias the candidate is compared with.")
    if_no_champion: Literal["fail", "pass"] = Field(
        "fail",
        description="When the champion alias does not exist yet (a first release), `pass` lets gates that "
        "compare with it pass, saying so in the summary; `fail` keeps them failed.",
    )
    thresholds: list[Threshold] = Field(default_factory=list, description="Extra min/max gates.")
    summary: str = Field(
        "{reports}/{stage}.md",
        description="Markdown summary file, relative to the working directory; `{reports}` is the "
        "folder `pipeline run --reports` names (default `reports`), `{stage}` this stage's name.",
    )

    @field_validator("thresholds")
    @classmethod
    def _min_or_max(cls, value: list[Threshold]) -> list[Threshold]:
        for item in value:
            if item.no_regression_vs is not None:
                raise ValueError("thresholds take min or max; comparisons belong in the evaluation suite")
        return value


def _first_release(report: GateReport, alias: str) -> GateReport:
    results = []
    for gate in report.results:
        if not gate.passed and gate.kind == "no_regression" and gate.baseline == alias:
            gate = replace(gate, passed=True, reason=f"no {alias!r} champion yet: first release allowed")
        results.append(gate)
    return GateReport(tuple(results))


class Gate(StageKind):
    kind = "gate"
    params = GateParams
    outputs = ("passed", "summary")
    said_no = "gate_failed"
    summary = "Decide the release from stored gate results; write a markdown summary."

    def fingerprint(self, ctx: StageContext, params: StageParams) -> dict[str, str]:
        assert isinstance(params, GateParams)
        registry = Registry.from_home(ctx.home)
        digests = {}
        for run_id in params.evals:
            info = Tracker.from_home(ctx.home).get_run(run_id)
            model = registry.get(info.params["model"])
            champion = _other_champion(registry, f"{model.name}@{params.against}", model.digest)
            digests[f"champion {model.name}@{params.against}"] = champion
        # where the summary goes is part of the key: a run with another --reports writes it there
        digests["summary"] = str(_summary_path(ctx, params))
        return digests

    def run(self, ctx: StageContext, params: StageParams) -> StageOutcome:
        assert isinstance(params, GateParams)
        parts, verdicts = [], []
        for run_id in params.evals:
            text, report = self._one(ctx, params, run_id)
            parts.append(text)
            verdicts.append(report)
        failures = [g for report in verdicts for g in report.failures]
        total = sum(len(report.results) for report in verdicts)
        headline = (
            "✅ **Gates passed.**" if not failures else f"❌ **{len(failures)} of {total} gates failed.**"
        )
        body = f"## Pipeline {ctx.pipeline}: gate `{ctx.stage}`\n\n{headline}\n\n" + "\n".join(parts)
        path = _summary_path(ctx, params)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
        message = "all gates passed" if not failures else "failed: " + "; ".join(g.reason for g in failures)
        outputs = {"passed": str(not failures).lower(), "summary": str(path)}
        return StageOutcome(outputs, passed=not failures, message=message, files={"summary": path})

    def _one(self, ctx: StageContext, params: GateParams, run_id: str) -> tuple[str, GateReport]:
        from llmops.evals.runner import EvalRunner

        runner = EvalRunner(ctx.home, env=dict(ctx.env))
        evaluated = runner.load(run_id)
        model = evaluated.model
        stored = model.tags.get(f"gates/{evaluated.suite.name}")
        if not evaluated.suite.gates:
            report = GateReport(())  # the suite gates nothing; only the thresholds below apply
        elif stored is None or stored.get("run") != evaluated.run_id:
            report = GateReport((_missing(evaluated.suite.name, run_id),))
        else:
            report = gates_from_json(stored)
        champion_ref = f"{model.name}@{params.against}"
        champion = _other_champion(runner.registry, champion_ref, model.digest)
        if champion == "none" and params.if_no_champion == "pass":
            report = _first_release(report, params.against)
        extra = [t for t in params.thresholds if t.suite in (None, evaluated.suite.name)]
        if extra:
            added = evaluate_gates(extra, GateInputs(evaluated.summary))
            report = GateReport(report.results + added.results)
        comparison = _versus_champion(runner, evaluated, champion_ref) if champion != "none" else None
        text = render_summary_markdown(evaluated.summary)
        if comparison is not None:
            text += "\n" + render_comparison_markdown(comparison)
        else:
            text += f"\nNo other champion: `{champion_ref}` is unset or is this version.\n"
        return text + "\n" + render_gates_markdown(report), report


def _summary_path(ctx: StageContext, params: GateParams) -> Path:
    return Path(params.summary.format(stage=ctx.stage, reports=ctx.reports_dir.as_posix()))


def _missing(suite: str, run_id: str) -> GateResult:
    return GateResult(
        name=f"{suite} stored gates",
        kind="min",
        metric="-",
        passed=False,
        reason=f"no stored gate results of evaluation run {run_id} on the model version",
    )


def _digest_or_none(registry: Registry, ref: str) -> str:
    try:
        return registry.get(ref).digest
    except NotFound:
        return "none"


def _other_champion(registry: Registry, ref: str, candidate_digest: str) -> str:
    """The champion's digest, or "none" when there is none or it is the candidate itself (promoted
    by an earlier run of this pipeline: its stored evaluation and first-release decision stand)."""
    digest = _digest_or_none(registry, ref)
    return "none" if digest == candidate_digest else digest


def _versus_champion(runner: EvalRunner, evaluated: EvalRun, champion_ref: str) -> Comparison | None:
    """Candidate vs champion on the same suite, from stored runs (the evaluation ran the champion)."""
    champion = runner.registry.get(champion_ref)
    stored = runner.tracker.find_runs(
        "eval", {"suite_digest": evaluated.suite_digest, "model_digest": champion.digest}
    )
    if not stored:
        return None
    try:
        base = runner.load(stored[0].id)
    except LLMOpsError:
        return None
    stats = evaluated.suite.statistics
    return compare_runs(
        evaluated.results,
        base.results,
        evaluated.metrics,
        resamples=stats.resamples,
        confidence=stats.confidence,
        seed=stats.seed,
    )


STAGE = Gate()
