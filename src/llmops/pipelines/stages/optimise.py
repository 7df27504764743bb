"""`quantize`: quantise a model version and record its trade-off; `distill`: distil a teacher.

``quantize`` registers the quantised version (lineage to its source, the pipeline run in its tags),
then, unless ``tradeoff: false``, evaluates it on the source's suite (``suite`` when given, else
the suite of the source's latest evaluation) and serves both through the engine in the same run
(``serving`` bounds how much); the table is stored on the new version (``models compare`` prints
it).

``distill`` is a ``train`` stage whose recipe must be ``kind: distill`` and whose ``teacher``
(a version reference, typically another stage's output) replaces the recipe's ``distill.teacher``,
so the teacher's digest is part of the cache key and the DAG orders the teacher's stage first.
The student registers with lineage to its teacher (``train.distill``'s tags and datasets).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmops.errors import InvalidInput, LLMOpsError
from llmops.pipelines.stages.base import StageContext, StageKind, StageOutcome, StageParams, file_digest
from llmops.pipelines.stages.train import Train, TrainParams, recipe_with_params
from llmops.registry import Registry

# the methods of llmops.train.quantized_linear (not imported here: it brings torch into spec checks)
Method = Literal["int8-dynamic", "int8-weight-only", "int4-weight-only"]


class ServingBudget(BaseModel):
    """How much serving to measure (kept small: it runs inside the pipeline)."""

    model_config = ConfigDict(extra="forbid")
    requests: int = Field(4, ge=1, description="Single-stream requests per model.")
    concurrency: int = Field(32, ge=1, description="Requests at once for throughput and p95 TTFT.")
    max_tokens: int = Field(16, ge=2, description="Tokens generated per request.")
    threads: int = Field(1, ge=1, description="torch threads of the engine.")


class QuantizeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    group_size: int = Field(32, description="Weights per scale of int4-weight-only (32/64/128/256).")


class QuantizeParams(StageParams):
    model: str = Field(description="Model version to quantise, e.g. `${stages.train.outputs.model}`.")
    method: Method = Field(description="int8-dynamic | int8-weight-only | int4-weight-only.")
    name: str | None = Field(None, description="Registered name of the result (default <source>-<method>).")
    options: QuantizeOptions = Field(default_factory=QuantizeOptions, description="Options of the method.")
    tradeoff: bool = Field(True, description="Evaluate and benchmark the result against its source.")
    suite: str | None = Field(
        None, description="Suite YAML for the trade-off (default: the source's latest evaluation's)."
    )
    limit: int | None = Field(None, ge=1, description="Evaluate only the first N examples.")
    serving: ServingBudget | None = Field(
        default_factory=ServingBudget, description="Serving benchmark budget; null skips it."
    )


class Quantize(StageKind):
    kind = "quantize"
    params = QuantizeParams
    outputs = ("model",)
    summary = "Quantise a model version; register it with lineage and its measured trade-off."

    def fingerprint(self, ctx: StageContext, params: StageParams) -> dict[str, str]:
        assert isinstance(params, QuantizeParams)
        digests = {"model": Registry.from_home(ctx.home).get(params.model).digest}
        if params.suite:
            digests["suite"] = file_digest(ctx.path(params.suite))
        return digests

    def run(self, ctx: StageContext, params: StageParams) -> StageOutcome:
        assert isinstance(params, QuantizeParams)
        from llmops.evals.serving_bench import ServingSettings
        from llmops.evals.tradeoff import measure_tradeoff
        from llmops.train.quantize_version import quantize_version

        result = quantize_version(
            Registry.from_home(ctx.home),
            params.model,
            params.method,
            name=params.name,
            group_size=params.options.group_size,
            reason=f"pipeline {ctx.pipeline} run {ctx.pipeline_run_id} stage {ctx.stage}",
            extra_tags=ctx.lineage,
        )
        message = f"{result.version.ref}: weight memory {result.weight_ratio:.3f}x of {result.source.ref}"
        if params.tradeoff:
            budget = params.serving
            settings = (
                ServingSettings(budget.requests, budget.concurrency, budget.max_tokens, budget.threads)
                if budget is not None
                else None
            )
            suite = ctx.path(params.suite) if params.suite else None
            record = measure_tradeoff(
                ctx.home,
                result.version.ref,
                result.source.ref,
                suite=suite,
                limit=params.limit,
                serving=settings,
            )
            message += "".join(
                f"; {row['metric']} {row['candidate']:.3f} vs {row['baseline']:.3f}"
                for row in record.quality
                if row.get("candidate") is not None and row.get("baseline") is not None
            )
            decode = record.ratio("decode_tokens_per_s")
            if decode is not None:
                message += f"; decode {decode:.2f}x"
            if record.note:
                message += f" ({record.note})"
        return StageOutcome({"model": result.version.ref}, message=message)

    def still_valid(self, ctx: StageContext, params: StageParams, outputs: Mapping[str, str]) -> str | None:
        try:
            Registry.from_home(ctx.home).get(outputs["model"])
        except LLMOpsError as exc:
            return f"model {outputs.get('model')} is gone: {exc.message}"
        return None


class DistillParams(TrainParams):
    teacher: str = Field(description="Teacher version; replaces the recipe's `distill.teacher`.")


class Distill(Train):
    kind = "distill"
    params: ClassVar[type[TrainParams]] = DistillParams
    outputs = ("model", "run")
    summary = "Distil a teacher version into a student (a `kind: distill` recipe) and register it."

    def fingerprint(self, ctx: StageContext, params: StageParams) -> dict[str, str]:
        assert isinstance(params, DistillParams)
        teacher = Registry.from_home(ctx.home).get(params.teacher).digest
        return {**super().fingerprint(ctx, params), "teacher": teacher}

    def run(self, ctx: StageContext, params: StageParams) -> StageOutcome:
        assert isinstance(params, DistillParams)
        kind = recipe_with_params(ctx, params).get("kind")
        if kind != "distill":
            raise InvalidInput(
                f"stage {ctx.stage!r}: params.recipe: a distill stage needs a `kind: distill` recipe, "
                f"got kind {kind!r}",
                param="recipe",
            )
        teacher = Registry.from_home(ctx.home).get(params.teacher).ref
        return super().run(ctx, params.model_copy(update={"set": {**params.set, "distill.teacher": teacher}}))


QUANTIZE = Quantize()
DISTILL = Distill()
