"""Evaluation runs: a suite, a registered model version and a dataset version, scored and stored.

A run resolves the model (registry) and the dataset (data), checks the suite against the dataset's
fields before any generation, generates in batches, scores every example, and stores it as a
tracking run in the ``eval`` experiment: parameters name the suite, model and dataset (with their
digests), metrics hold the run scores, and artifacts hold the suite and every example's input,
output and scores. Gate results are stored on the run (tag ``gates``) and on the model version, so
``eval report`` and the model card show them. A baseline for ``no_regression_vs`` gates reuses a
stored run of the same suite on the same model digest, or is run now.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.data.versions import DatasetStore, DatasetVersionInfo
from llmops.errors import InvalidInput, NotFound
from llmops.evals.gates import GateInputs, GateReport, evaluate_gates
from llmops.evals.generation import Generator, Prompt, TransformersGenerator
from llmops.evals.metric_base import Measurements, Metric, MetricResources
from llmops.evals.metrics import build_metrics
from llmops.evals.results import Comparison, RunResults, RunSummary
from llmops.evals.scoring import example_from_record, reference_of, score_example
from llmops.evals.stats import compare_runs
from llmops.evals.storage import gates_from_json, gates_to_json, results_from_json, results_to_json
from llmops.evals.suite import Suite, load_suite, validate_suite_against_fields
from llmops.evals.summary import summarize_run
from llmops.registry import ModelVersionInfo, Registry
from llmops.registry.cards import EVALUATION_EXPERIMENT, GATES_TAG
from llmops.store.home import Home
from llmops.tracking import Tracker

EXPERIMENT = EVALUATION_EXPERIMENT
GeneratorFactory = Callable[[Path], Generator]


@dataclass(frozen=True)
class EvalRun:
    run_id: str
    suite: Suite
    suite_digest: str
    model: ModelVersionInfo
    dataset: DatasetVersionInfo
    results: RunResults
    summary: RunSummary
    metrics: tuple[Metric, ...]
    gates: GateReport | None = None


def _default_generator(model_dir: Path) -> Generator:
    return TransformersGenerator(model_dir)


class EvalRunner:
    def __init__(
        self,
        home: Home,
        *,
        env: Mapping[str, str] | None = None,
        generator_factory: GeneratorFactory = _default_generator,
    ) -> None:
        self.home = home
        self.registry = Registry.from_home(home)
        self.datasets = DatasetStore.from_home(home)
        self.tracker = Tracker.from_home(home)
        self.resources = MetricResources(env=dict(env or {}))
        self.generator_factory = generator_factory
        self._generators: dict[str, Generator] = {}

    # ---- running ----
    def run(
        self, suite_path: Path, model_ref: str, *, limit: int | None = None, gate: bool = True
    ) -> EvalRun:
        suite = load_suite(suite_path)
        suite_text = Path(suite_path).read_bytes()
        evaluated = self._evaluate(
            suite, hashlib.sha256(suite_text).hexdigest(), suite_text, model_ref, limit
        )
        if not gate or not suite.gates:
            return evaluated
        baselines = {
            spec.no_regression_vs: self._baseline(suite_path, spec.no_regression_vs, model_ref, limit)
            for spec in suite.gates
            if spec.no_regression_vs is not None
        }
        inputs = GateInputs(
            evaluated.summary,
            evaluated.metrics,
            evaluated.results,
            {k: v for k, v in baselines.items() if v is not None},
            suite.statistics,
        )
        report = evaluate_gates(suite.gates, inputs)
        self.tracker.set_tags(evaluated.run_id, {GATES_TAG: json.dumps(gates_to_json(report))})
        self.registry.merge_tags(
            evaluated.model.ref,
            {f"gates/{suite.name}": {**gates_to_json(report), "run": evaluated.run_id}},
            reason=f"evaluation {evaluated.run_id}",
        )
        return EvalRun(**{**evaluated.__dict__, "gates": report})

    def _evaluate(
        self, suite: Suite, digest: str, suite_text: bytes, model_ref: str, limit: int | None
    ) -> EvalRun:
        model = self.registry.get(model_ref)
        dataset = self.datasets.get(suite.dataset)
        rows = self.datasets.rows(dataset)[: limit or None]
        if not rows:
            raise InvalidInput(f"dataset {dataset.ref} has no rows to evaluate", param="dataset")
        validate_suite_against_fields(suite, _fields_of(rows))
        metrics = tuple(build_metrics(suite.metrics, self.resources))
        try:
            results = self._score(suite, model, rows, metrics)
            summary = summarize_run(results, metrics, suite.statistics)
        finally:
            for metric in metrics:
                metric.close()
        run_id = self._store(suite, digest, suite_text, model, dataset, results, summary)
        return EvalRun(run_id, suite, digest, model, dataset, results, summary, metrics)

    def _score(
        self,
        suite: Suite,
        model: ModelVersionInfo,
        rows: list[dict[str, object]],
        metrics: tuple[Metric, ...],
    ) -> RunResults:
        examples = [example_from_record(row, suite.fields, i) for i, row in enumerate(rows)]
        prompts = [
            Prompt(e.prompt, e.messages, reference_of(row, suite.fields))
            for e, row in zip(examples, rows, strict=True)
        ]
        needs_reference = any(m.info.kind == "perplexity" for m in metrics)
        generations = self._generator(model).generate(
            prompts, suite.generation, score_reference=needs_reference
        )
        outcomes = []
        for example, prompt, generation in zip(examples, prompts, generations, strict=True):
            measured = Measurements(
                ttft_s=generation.ttft_s,
                tokens_per_s=generation.tokens_per_s,
                output_tokens=generation.output_tokens,
                reference_token_logprobs=generation.reference_token_logprobs,
            )
            example = example.__class__(**{**example.__dict__, "measurements": measured})
            outcomes.append(score_example(metrics, generation.text, prompt.reference, example))
        return RunResults(suite=suite.name, model=model.ref, outcomes=tuple(outcomes))

    def _generator(self, model: ModelVersionInfo) -> Generator:
        if model.format == "hf-encoder":
            if model.digest not in self._generators:
                from llmops.evals.classifier import ClassifierGenerator

                self._generators[model.digest] = ClassifierGenerator(self.registry.local_path(model.ref))
            return self._generators[model.digest]
        if model.format != "hf-causal-lm":
            raise InvalidInput(
                f"{model.ref} is a {model.format}; evaluate a merged model or its base for now", param="model"
            )
        if model.digest not in self._generators:
            self._generators[model.digest] = self.generator_factory(self.registry.local_path(model.ref))
        return self._generators[model.digest]

    def _store(
        self,
        suite: Suite,
        digest: str,
        suite_text: bytes,
        model: ModelVersionInfo,
        dataset: DatasetVersionInfo,
        results: RunResults,
        summary: RunSummary,
    ) -> str:
        tags = {"suite": suite.name, "suite_digest": digest, "model_digest": model.digest, "model": model.ref}
        params = {
            "suite": suite.name,
            "model": model.ref,
            "dataset": dataset.ref,
            "dataset_digest": dataset.digest,
            "examples": len(results.outcomes),
        }
        with self.tracker.start_run(
            EXPERIMENT, f"{suite.name} on {model.ref}", params=params, tags=tags
        ) as run:
            for metric in summary.metrics:
                if metric.score is not None:
                    run.log_metric(metric.info.metric_id, metric.score, step=0)
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "suite.yaml").write_bytes(suite_text)
                (Path(tmp) / "results.json").write_bytes(results_to_json(results))
                run.log_artifact(Path(tmp) / "suite.yaml")
                run.log_artifact(Path(tmp) / "results.json")
        return run.id

    # ---- reading back and comparing ----
    def load(self, run_id: str) -> EvalRun:
        info = self.tracker.get_run(run_id)
        if info.experiment != EXPERIMENT or "results.json" not in info.artifacts:
            raise NotFound(f"run {run_id!r} is not an evaluation run", param="run")
        artifacts = self.home.artifacts
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "suite.yaml"
            path.write_bytes(artifacts.read_bytes(info.artifacts["suite.yaml"]))
            suite = load_suite(path)
        results = results_from_json(artifacts.read_bytes(info.artifacts["results.json"]))
        metrics = tuple(build_metrics(suite.metrics, self.resources))
        summary = summarize_run(results, metrics, suite.statistics)
        model = self.registry.get(info.params["model"])
        dataset = self.datasets.get(info.params["dataset"])
        gates = _stored_gates(info.id, info.tags, model.tags.get(f"gates/{suite.name}"))
        return EvalRun(
            info.id, suite, info.tags["suite_digest"], model, dataset, results, summary, metrics, gates
        )

    def results_for(self, suite_path: Path, model_ref: str, limit: int | None = None) -> EvalRun:
        """The stored run of this suite on this model's digest, or a new one."""
        suite_text = Path(suite_path).read_bytes()
        digest = hashlib.sha256(suite_text).hexdigest()
        model = self.registry.get(model_ref)
        stored = self.tracker.find_runs(EXPERIMENT, {"suite_digest": digest, "model_digest": model.digest})
        for info in stored:
            if limit is None or int(info.params.get("examples", -1)) == limit:
                return self.load(info.id)
        return self._evaluate(load_suite(suite_path), digest, suite_text, model.ref, limit)

    def _baseline(self, suite_path: Path, alias: str, model_ref: str, limit: int | None) -> RunResults | None:
        name = self.registry.get(model_ref).name
        try:
            baseline = self.registry.get(f"{name}@{alias}")
        except NotFound:
            return None  # the gate fails closed: no baseline to compare with
        return self.results_for(suite_path, baseline.ref, limit).results

    def compare(
        self, suite_path: Path, candidate: str, baseline: str, limit: int | None = None
    ) -> tuple[Comparison, EvalRun, EvalRun]:
        cand = self.results_for(suite_path, candidate, limit)
        base = self.results_for(suite_path, baseline, limit)
        stats = cand.suite.statistics
        comparison = compare_runs(
            cand.results,
            base.results,
            cand.metrics,
            resamples=stats.resamples,
            confidence=stats.confidence,
            seed=stats.seed,
        )
        return comparison, cand, base


def _stored_gates(run_id: str, run_tags: dict[str, str], on_version: Any) -> GateReport | None:
    """The gates stored with the run, or (runs from before that) on the version when they are this run's."""
    if GATES_TAG in run_tags:
        return gates_from_json(json.loads(run_tags[GATES_TAG]))
    if isinstance(on_version, dict) and on_version.get("run") == run_id:
        return gates_from_json(on_version)
    return None


def _fields_of(rows: list[dict[str, object]]) -> set[str]:
    fields: set[str] = set()
    for row in rows[:100]:
        fields |= set(row)
    return fields
