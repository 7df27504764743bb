"""An evaluation suite: pydantic models over a YAML file, loading, and pre-flight validation.

A suite names a dataset, says which dataset fields hold the prompt and the reference, how to
generate, which metrics to compute, which gates decide pass/fail, and how to bootstrap. Example::

    name: qa-smoke
    dataset: qa@3
    fields: {input: question, reference: answer}
    generation: {max_tokens: 64, temperature: 0.0, seed: 0}
    metrics:
      - name: exact_match
      - name: rouge
      - name: regex
        id: cites_source
        pattern: "\\[\\d+\\]"
    gates:
      - {metric: exact_match, min: 0.6}
      - {metric: exact_match, no_regression_vs: production, tolerance: 0.02}

``load_suite`` turns any schema error into ``InvalidInput`` naming the file and the field;
``validate_suite_against_fields`` checks the dataset has every field the suite reads, before any
generation is spent.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from llmops.errors import InvalidInput, NotFound
from llmops.evals.metric_specs import MetricSpec
from llmops.evals.metrics import METRIC_KINDS, metric_kinds
from llmops.security.yaml_input import load_yaml

GateKind = Literal["min", "max", "no_regression"]


def _known_kind(item: Any) -> Any:
    """A clearer error than the union's for a misspelt metric: name it and list the known kinds."""
    if isinstance(item, dict) and "name" in item and item["name"] not in METRIC_KINDS:
        raise ValueError(f"unknown metric {item['name']!r}; known metrics: {', '.join(metric_kinds())}")
    return item


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldMapping(_Strict):
    input: str = Field(default="prompt", description="Dataset field with the prompt text.")
    reference: str | None = Field(default="reference", description="Dataset field with the reference answer.")
    messages: str | None = Field(
        default=None, description="Dataset field with chat messages; when set it is the prompt, not 'input'."
    )
    id: str | None = Field(
        default=None, description="Dataset field with a stable row id; default the row index."
    )


class GenerationParams(_Strict):
    max_tokens: int = Field(default=256, ge=1, description="Most tokens generated per example.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="Sampling temperature; 0 is greedy.")
    seed: int | None = Field(default=0, description="Sampling seed, for reproducible runs.")
    stop: list[str] = Field(default_factory=list, description="Stop sequences.")


class StatisticsConfig(_Strict):
    resamples: int = Field(default=1000, ge=100, le=100_000, description="Bootstrap resamples.")
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0, description="Confidence level of intervals.")
    seed: int = Field(default=0, description="Seed of the bootstrap, so reports are reproducible.")


class GateSpec(_Strict):
    """One gate: exactly one of ``min``, ``max`` or ``no_regression_vs``."""

    name: str | None = Field(default=None, description="Display name; default derived from the check.")
    metric: str = Field(description="Id of the metric the gate reads.")
    min: float | None = Field(default=None, description="Pass when the metric's run score is >= this.")
    max: float | None = Field(default=None, description="Pass when the metric's run score is <= this.")
    no_regression_vs: str | None = Field(
        default=None, description="Registry alias of the baseline the candidate must not regress against."
    )
    tolerance: float = Field(
        default=0.0, ge=0.0, description="Allowed regression, in metric units (no_regression_vs only)."
    )
    confidence: float = Field(
        default=0.95,
        gt=0.5,
        lt=1.0,
        description="Confidence of the difference interval (no_regression_vs only).",
    )

    @model_validator(mode="after")
    def _one_check(self) -> GateSpec:
        chosen = [key for key in ("min", "max", "no_regression_vs") if getattr(self, key) is not None]
        if len(chosen) != 1:
            raise ValueError(
                f"a gate needs exactly one of min, max, no_regression_vs (got {chosen or 'none'})"
            )
        extras = {"tolerance", "confidence"} & self.model_fields_set
        if self.no_regression_vs is None and extras:
            raise ValueError(f"{', '.join(sorted(extras))} apply only to no_regression_vs gates")
        return self

    @property
    def kind(self) -> GateKind:
        if self.min is not None:
            return "min"
        return "max" if self.max is not None else "no_regression"

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.kind == "min":
            return f"{self.metric} >= {self.min:g}"
        if self.kind == "max":
            return f"{self.metric} <= {self.max:g}"
        return f"{self.metric} no regression vs {self.no_regression_vs}"


class Suite(_Strict):
    name: str = Field(min_length=1, description="Name of the suite, shown in reports.")
    description: str = Field(default="", description="What the suite checks, for people.")
    dataset: str = Field(min_length=1, description="Dataset reference, e.g. 'qa@3' or 'qa:test'.")
    fields: FieldMapping = Field(default_factory=FieldMapping, description="Which dataset fields to read.")
    generation: GenerationParams = Field(default_factory=GenerationParams, description="How to generate.")
    metrics: list[Annotated[MetricSpec, BeforeValidator(_known_kind)]] = Field(
        min_length=1, description="Metrics to compute on every example."
    )
    gates: list[GateSpec] = Field(default_factory=list, description="Checks that decide pass/fail.")
    statistics: StatisticsConfig = Field(
        default_factory=StatisticsConfig, description="Bootstrap settings for intervals and comparisons."
    )

    @model_validator(mode="after")
    def _ids_and_gates(self) -> Suite:
        ids = [spec.metric_id for spec in self.metrics]
        duplicates = sorted({metric_id for metric_id in ids if ids.count(metric_id) > 1})
        if duplicates:
            raise ValueError(f"metric ids {duplicates} are used twice; give each a distinct 'id'")
        for index, gate in enumerate(self.gates):
            if gate.metric not in ids:
                raise ValueError(
                    f"gates[{index}] reads metric {gate.metric!r}, which the suite does not compute"
                )
        return self


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite YAML file; every problem is ``InvalidInput`` naming file and field."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"suite file {path} does not exist", param="suite")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML: {exc}", param="suite") from exc
    if not isinstance(data, dict):
        raise InvalidInput(
            f"{path}: a suite must be a YAML mapping with name, dataset, metrics", param="suite"
        )
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        raise suite_error(path, exc) from exc


def suite_error(source: str | Path, exc: ValidationError) -> InvalidInput:
    """One ``InvalidInput`` listing every schema problem, ``param`` naming the first field."""
    problems = []
    for error in exc.errors():
        where = _location(error["loc"]) or "(top level)"
        problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    first = _location(exc.errors()[0]["loc"]) if exc.errors() else None
    return InvalidInput(f"{source}: invalid suite: " + "; ".join(problems), param=first or None)


def _location(loc: tuple[int | str, ...]) -> str:
    """``('metrics', 2, 'regex', 'pattern')`` → ``metrics[2].pattern`` (the union tag is noise)."""
    text = ""
    previous: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(previous, int) and part in METRIC_KINDS:
            pass
        else:
            text += f".{part}" if text else part
        previous = part
    return text


def validate_suite_against_fields(suite: Suite, available_fields: Iterable[str]) -> None:
    """Check the dataset has every field the suite reads and every metric is known, before generating."""
    available = set(available_fields)
    problems: list[tuple[str, str]] = []
    prompt_key = "messages" if suite.fields.messages else "input"
    prompt_field = suite.fields.messages or suite.fields.input
    if prompt_field not in available:
        problems.append(
            (f"fields.{prompt_key}", f"dataset has no field {prompt_field!r} (fields.{prompt_key})")
        )
    if suite.fields.id is not None and suite.fields.id not in available:
        problems.append(("fields.id", f"dataset has no field {suite.fields.id!r} (fields.id)"))
    problems.extend(_metric_problems(suite, available))
    if problems:
        listing = "; ".join(message for _, message in problems)
        raise InvalidInput(
            f"suite {suite.name!r} does not fit the dataset: {listing}. "
            f"Available fields: {sorted(available)}",
            param=problems[0][0],
        )


def _metric_problems(suite: Suite, available: set[str]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    reference = suite.fields.reference
    reference_checked = False
    for index, spec in enumerate(suite.metrics):
        entry = METRIC_KINDS.get(spec.kind)
        if entry is None:
            problems.append((f"metrics[{index}].name", f"unknown metric {spec.kind!r}"))
            continue
        if entry.metric_type.needs_reference:
            if reference is None:
                problems.append(("fields.reference", f"metric {spec.metric_id!r} needs fields.reference"))
            elif reference not in available and not reference_checked:
                problems.append(
                    ("fields.reference", f"dataset has no field {reference!r} (fields.reference)")
                )
            reference_checked = True
        for field_name in spec.dataset_fields():
            if field_name not in available:
                problems.append(
                    (
                        f"metrics[{index}]",
                        f"metric {spec.metric_id!r} reads missing dataset field {field_name!r}",
                    )
                )
    explicit_reference = "reference" in suite.fields.model_fields_set and reference is not None
    if explicit_reference and not reference_checked and reference not in available:
        problems.append(("fields.reference", f"dataset has no field {reference!r} (fields.reference)"))
    return problems
