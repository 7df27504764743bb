"""Run a pipeline: stages in dependency order, each skipped when its cache key is unchanged.

The pipeline run is a lifecycle run (the lock, the state, the per-stage progress) and a tracking
run in the ``pipeline`` experiment; each stage that runs is a tracking run in ``pipeline.stage``
tagged with its parent (``parent_run_id``), and each output version records the pipeline run that
made it. A failed stage stops its dependants and keeps what succeeded; running again resumes from
the cache. A gate that says no blocks its dependants the same way and the run exits 1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmops.errors import InvalidInput, LLMOpsError
from llmops.pipelines import cache
from llmops.pipelines.lock import PipelineLock
from llmops.pipelines.spec import Pipeline, Stage, check_available, resolve
from llmops.pipelines.stages import StageContext, StageOutcome, StageParams
from llmops.pipelines.stages.base import file_digest
from llmops.store.home import Home
from llmops.tracking import ActiveRun, RunInfo, Tracker

DONE = ("ran", "skipped")


@dataclass
class StageReport:
    name: str
    kind: str
    status: str  # ran | skipped | failed | gate_failed | blocked | would_run | up_to_date
    reason: str
    outputs: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    message: str | None = None
    seconds: float = 0.0


@dataclass
class PipelineResult:
    pipeline: str
    run_id: str
    tracking_run_id: str
    state: str
    stages: list[StageReport]

    @property
    def exit_code(self) -> int:
        return 0 if self.state == "succeeded" else 1


@dataclass
class _Decision:
    params: StageParams
    ctx: StageContext
    key: cache.CacheKey
    hit: RunInfo | None
    reason: str


class Runner:
    def __init__(
        self,
        home: Home,
        *,
        env: Mapping[str, str] | None = None,
        log: Callable[[str], None] = print,
        reports_dir: Path = Path("reports"),
        lease_s: float = 30.0,
    ) -> None:
        self.home = home
        self.tracker = Tracker.from_home(home)
        self.env = dict(env or {})
        self.log = log
        self.reports_dir = reports_dir
        self.lease_s = lease_s

    def select(self, pipeline: Pipeline, targets: Sequence[str] = (), force: Sequence[str] = ()) -> list[str]:
        for name in [*targets, *force]:
            if name not in pipeline.stages:
                raise InvalidInput(f"no stage {name!r}; stages: {', '.join(pipeline.order)}", param="stage")
        return pipeline.upstream(targets) if targets else list(pipeline.order)

    # ---- running ----
    def run(
        self, pipeline: Pipeline, *, targets: Sequence[str] = (), force: Sequence[str] = ()
    ) -> PipelineResult:
        selected = self.select(pipeline, targets, force)
        check_available(pipeline, selected)
        lock = PipelineLock(self.home.store, actor=self.home.actor, lease_s=self.lease_s, log=self.log)
        data = {"file": str(pipeline.path), "stages_selected": selected}
        record, abandoned = lock.start(pipeline.name, data)
        if abandoned is not None:
            self._close_abandoned(abandoned.id, abandoned.data)
        tags = {
            "pipeline": pipeline.name,
            "lifecycle_run": record.id,
            "file_digest": file_digest(pipeline.path),
        }
        parent = self.tracker.start_run(
            cache.PIPELINE_EXPERIMENT, pipeline.name, params=pipeline.params, tags=tags
        )
        lock.update(record.id, {"tracking_run": parent.id})
        self.log(f"pipeline {pipeline.name}: run {record.id[:12]} (tracking run {parent.id[:12]})")
        reports: list[StageReport] = []
        try:
            reports = self._stages(pipeline, selected, set(force), record.id, parent, lock)
        except BaseException as exc:
            parent.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED", repr(exc))
            lock.finish(record.id, "failed", reason=f"interrupted: {exc!r}", numbers={}, data={})
            raise
        state = "succeeded" if all(r.status in DONE for r in reports) else "failed"
        counts = {s: sum(1 for r in reports if r.status == s) for s in {r.status for r in reports}}
        parent.end(
            "FINISHED" if state == "succeeded" else "FAILED", None if state == "succeeded" else str(counts)
        )
        stages_data = {r.name: asdict(r) for r in reports}
        lock.finish(
            record.id,
            state,
            reason=f"{pipeline.name}: {counts}",
            numbers=counts,
            data={"stages": stages_data},
        )
        result = PipelineResult(pipeline.name, record.id, parent.id, state, reports)
        self._write_report(pipeline, result)
        return result

    def _stages(
        self,
        pipeline: Pipeline,
        selected: list[str],
        force: set[str],
        run_id: str,
        parent: ActiveRun,
        lock: PipelineLock,
    ) -> list[StageReport]:
        outputs: dict[str, dict[str, str]] = {}
        reports: dict[str, StageReport] = {}
        for name in selected:
            if lock.lost.is_set():
                raise LLMOpsError(f"pipeline {pipeline.name}: the lock was lost; another driver took over")
            stage = pipeline.stages[name]
            report = self._one(pipeline, stage, outputs, reports, name in force, run_id, parent.id)
            reports[name] = report
            if report.status in DONE:
                outputs[name] = report.outputs
            lock.update(run_id, {"stages": {n: asdict(r) for n, r in reports.items()}})
        return list(reports.values())

    def _one(
        self,
        pipeline: Pipeline,
        stage: Stage,
        outputs: dict[str, dict[str, str]],
        reports: Mapping[str, StageReport],
        forced: bool,
        run_id: str,
        parent_id: str,
    ) -> StageReport:
        kind = stage.kind.kind
        stopped = [d for d in stage.depends_on if d in reports and reports[d].status not in DONE]
        if stopped:
            why = ", ".join(f"{d} {reports[d].status.replace('_', ' ')}" for d in stopped)
            self.log(f"[blocked] {stage.name}: not run because {why}")
            return StageReport(stage.name, kind, "blocked", f"blocked: {why}")
        started = time.monotonic()
        try:
            decision = self._decide(pipeline, stage, outputs, forced, run_id, parent_id)
            if decision.hit is not None:
                hit_outputs = cache.outputs_of(decision.hit)
                self._restore(decision.hit, hit_outputs)
                self.log(f"[skip] {stage.name}: {decision.reason}")
                return StageReport(stage.name, kind, "skipped", decision.reason, hit_outputs, decision.hit.id)
            self.log(f"[run] {stage.name} ({kind}): {decision.reason}")
            outcome, stage_run = self._execute(pipeline, stage, decision, run_id, parent_id)
        except LLMOpsError as exc:
            self.log(f"[FAILED] {stage.name}: {exc.message}")
            return StageReport(stage.name, kind, "failed", exc.message, seconds=time.monotonic() - started)
        seconds = time.monotonic() - started
        status = "ran" if outcome.passed else stage.kind.said_no
        mark = "[done]" if outcome.passed else f"[{status.replace('_', ' ').upper()}]"
        self.log(f"{mark} {stage.name}: {outcome.message or ''} ({seconds:.1f}s)")
        return StageReport(
            stage.name, kind, status, decision.reason, outcome.outputs, stage_run, outcome.message, seconds
        )

    def _decide(
        self,
        pipeline: Pipeline,
        stage: Stage,
        outputs: Mapping[str, Mapping[str, str]],
        forced: bool,
        run_id: str = "",
        parent_id: str = "",
    ) -> _Decision:
        params = resolve(stage, outputs)
        ctx = StageContext(
            home=self.home,
            pipeline=pipeline.name,
            stage=stage.name,
            base_dir=pipeline.base_dir,
            pipeline_run_id=parent_id,
            env=self.env,
            log=self.log,
            reports_dir=self.reports_dir,
        )
        key = cache.key_of(stage, params, stage.kind.fingerprint(ctx, params))
        if forced:
            return _Decision(params, ctx, key, None, "forced with --force")
        hit = cache.lookup(self.tracker, pipeline.name, stage.name, key)
        if hit is not None:
            unusable = stage.kind.still_valid(ctx, params, cache.outputs_of(hit))
            if unusable is None:
                reason = f"unchanged (key {key.digest[:12]}, outputs of run {hit.id[:12]})"
                return _Decision(params, ctx, key, hit, reason)
            return _Decision(params, ctx, key, None, f"cached outputs unusable: {unusable}")
        before = cache.previous(self.tracker, pipeline.name, stage.name)
        return _Decision(params, ctx, key, None, cache.why_changed(before, key))

    def _execute(
        self, pipeline: Pipeline, stage: Stage, decision: _Decision, run_id: str, parent_id: str
    ) -> tuple[StageOutcome, str]:
        tags = {
            "pipeline": pipeline.name,
            "stage": stage.name,
            "kind": stage.kind.kind,
            "parent_run_id": parent_id,
            "lifecycle_run": run_id,
            "reason": decision.reason[:500],
        }
        params = decision.key.as_run_params()
        with self.tracker.start_run(
            cache.STAGE_EXPERIMENT, f"{pipeline.name}/{stage.name}", params=params, tags=tags
        ) as run:
            decision.ctx.stage_run_id = run.id
            outcome = stage.kind.run(decision.ctx, decision.params)
            for name, path in outcome.files.items():
                run.log_artifact(path, f"output:{name}")
            run.set_tags({"outputs": json.dumps(outcome.outputs, sort_keys=True)})
            if not outcome.passed:
                run.end("FAILED", outcome.message or "check failed")  # a failed check is never cached
                return outcome, run.id
            # The cache record: the key is tagged, then the run finishes, only after every output
            # is registered; a stage killed before this line leaves no record that could be a hit.
            run.set_tags({"cache_key": decision.key.digest})
        return outcome, run.id

    def _restore(self, hit: RunInfo, outputs: Mapping[str, str]) -> None:
        """Put back the files a skipped stage produced (a fresh CI checkout has none)."""
        for artifact, digest in hit.artifacts.items():
            if not artifact.startswith("output:"):
                continue
            target = Path(outputs.get(artifact.removeprefix("output:"), ""))
            if not str(target) or (target.is_file() and file_digest(target) == digest):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.home.artifacts.read_bytes(digest))

    def _close_abandoned(self, lifecycle_id: str, data: Mapping[str, Any]) -> None:
        """End the tracking runs an interrupted pipeline run left RUNNING."""
        for run in self.tracker.find_runs(
            cache.STAGE_EXPERIMENT, {"lifecycle_run": lifecycle_id}, status="RUNNING"
        ):
            ActiveRun(self.tracker, run.id).end("KILLED", "the pipeline driver stopped mid-stage")
            self.log(f"stage run {run.id[:12]} ({run.tags.get('stage')}) was interrupted; it will run again")
        tracking = data.get("tracking_run")
        if isinstance(tracking, str):
            ActiveRun(self.tracker, tracking).end("KILLED", "the pipeline driver stopped")

    # ---- status without running ----
    def status(
        self, pipeline: Pipeline, *, targets: Sequence[str] = (), force: Sequence[str] = ()
    ) -> list[StageReport]:
        """What ``run`` would do now, stage by stage, and why (nothing is run or written)."""
        outputs: dict[str, dict[str, str]] = {}
        reports: list[StageReport] = []
        pending: set[str] = set()
        for name in self.select(pipeline, targets, force):
            stage = pipeline.stages[name]
            waiting = [d for d in stage.depends_on if d in pending]
            if waiting:
                reason = f"will run after {', '.join(waiting)}"
            else:
                try:
                    decision = self._decide(pipeline, stage, outputs, name in force)
                except LLMOpsError as exc:
                    reason = f"cannot tell yet: {exc.message}"
                else:
                    if decision.hit is not None:
                        outputs[name] = cache.outputs_of(decision.hit)
                        reports.append(
                            StageReport(name, stage.kind.kind, "up_to_date", decision.reason, outputs[name])
                        )
                        continue
                    reason = decision.reason
            pending.add(name)
            reports.append(StageReport(name, stage.kind.kind, "would_run", reason))
        return reports

    # ---- the report for CI ----
    def _write_report(self, pipeline: Pipeline, result: PipelineResult) -> None:
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        icon = "✅" if result.state == "succeeded" else "❌"
        lines = [
            f"# {icon} Pipeline `{pipeline.name}`: {result.state}",
            "",
            f"Run `{result.run_id}` (tracking run `{result.tracking_run_id}`).",
            "",
            "| stage | kind | status | why | outputs |",
            "|---|---|---|---|---|",
        ]
        for r in result.stages:
            outs = ", ".join(f"{k}={v}" for k, v in r.outputs.items() if v)
            why = (r.message or r.reason) if r.status != "skipped" else r.reason
            lines.append(f"| {r.name} | {r.kind} | {r.status} | {_cell(why)} | {_cell(outs)} |")
        gates = [
            r.outputs.get("summary") for r in result.stages if r.kind == "gate" and r.outputs.get("summary")
        ]
        for path in gates:
            assert path is not None
            if Path(path).is_file():
                lines += ["", Path(path).read_text(encoding="utf-8")]
        (self.reports_dir / "pipeline.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())[:300]
