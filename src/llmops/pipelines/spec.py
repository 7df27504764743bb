"""The ``llmops.yaml`` file: named stages, their parameters, and the references that make the DAG.

A file is refused before anything runs when it is not what it should be, and the message names the
stage and the field: an unknown kind, a parameter of the wrong type (from the file or from
``-p``), a reference to a stage or output that does not exist, a cycle, a stage that moves an alias
or deploys without coming after a gate.

References are written inside parameter values: ``${params.NAME}`` is a pipeline parameter
(substituted when the file is loaded, keeping its type when it is the whole value) and
``${stages.NAME.outputs.KEY}`` is another stage's output (substituted when that stage has run; it
makes this stage depend on that one).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmops.errors import InvalidInput, did_you_mean
from llmops.pipelines.stages import KINDS, StageKind, StageParams
from llmops.security.yaml_input import read_yaml_file

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
PARAM_REF = re.compile(r"\$\{params\.([A-Za-z0-9_-]+)\}")
STAGE_REF = re.compile(r"\$\{stages\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)\}")
ANY_REF = re.compile(r"\$\{[^}]*\}")
Scalar = str | int | float | bool


class StageSpec(BaseModel):
    """One stage of the file."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="What the stage does: one of the kinds `llmops pipeline kinds` lists.")
    params: dict[str, Any] = Field(default_factory=dict, description="The kind's parameters.")
    after: list[str] = Field(
        default_factory=list, description="Stages this one runs after without reading their outputs."
    )
    description: str | None = Field(None, description="What the stage is for.")


class PipelineSpec(BaseModel):
    """A pipeline file (`llmops.yaml`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="The pipeline's name (its lock and its runs).")
    description: str | None = Field(None, description="What the pipeline makes.")
    params: dict[str, Scalar] = Field(
        default_factory=dict, description="Pipeline parameters, referenced as `${params.NAME}`."
    )
    stages: dict[str, StageSpec] = Field(min_length=1, description="Stages by name, in any order.")


@dataclass(frozen=True)
class Stage:
    """A validated stage: its kind, its parameters (references to outputs still unresolved)."""

    name: str
    kind: StageKind
    raw: dict[str, Any]
    params: StageParams
    depends_on: tuple[str, ...]
    description: str | None


@dataclass(frozen=True)
class Pipeline:
    name: str
    description: str | None
    path: Path
    params: dict[str, Scalar]
    stages: dict[str, Stage]
    order: tuple[str, ...]

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def upstream(self, names: Sequence[str]) -> list[str]:
        """``names`` and every stage they depend on, in run order."""
        wanted: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name not in wanted:
                wanted.add(name)
                todo.extend(self.stages[name].depends_on)
        return [name for name in self.order if name in wanted]

    def downstream(self, name: str) -> set[str]:
        found: set[str] = set()
        for other in self.order:
            deps = self.stages[other].depends_on
            if name in deps or found & set(deps):
                found.add(other)
        return found


def _loc(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc)


def _walk(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _substitute_params(value: Any, params: Mapping[str, Scalar], where: str) -> Any:
    if isinstance(value, str):
        whole = PARAM_REF.fullmatch(value)
        for name in PARAM_REF.findall(value):
            if name not in params:
                hint = did_you_mean(name, params)
                raise InvalidInput(
                    f"{where}: unknown pipeline parameter ${{params.{name}}}.{hint}", param=where
                )
        if whole:
            return params[whole.group(1)]
        return PARAM_REF.sub(lambda m: str(params[m.group(1)]), value)
    if isinstance(value, Mapping):
        return {k: _substitute_params(v, params, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_params(v, params, f"{where}.{i}") for i, v in enumerate(value)]
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """``-p stage.param=value`` or ``-p param=value``: the dotted path and the YAML-typed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InvalidInput(f"-p {text!r}: write STAGE.PARAM=VALUE or PARAM=VALUE", param="p")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _apply_override(body: dict[str, Any], text: str) -> None:
    path, value = parse_override(text)
    params = body.get("params") or {}
    stages = body.get("stages") or {}
    if len(path) == 1:
        name = path[0]
        if name not in params:
            hint = did_you_mean(name, list(params) + list(stages))
            raise InvalidInput(f"-p {text!r}: the pipeline has no parameter {name!r}.{hint}", param="p")
        _check_scalar_type(name, params[name], value, text)
        params[name] = value
        return
    stage, *field = path
    if stage not in stages or not isinstance(stages[stage], dict):
        hint = did_you_mean(stage, list(stages))
        raise InvalidInput(f"-p {text!r}: no stage {stage!r}.{hint}", param="p")
    node = stages[stage].setdefault("params", {})
    for part in field[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise InvalidInput(f"-p {text!r}: {part!r} of stage {stage!r} is not a mapping", param="p")
    node[field[-1]] = value


def _check_scalar_type(name: str, default: Any, value: Any, text: str) -> None:
    expected = type(default)
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise InvalidInput(
            f"-p {text!r}: parameter {name!r} is a {expected.__name__} (default {default!r}), got {value!r}",
            param="p",
        )


def _validate_stage(name: str, spec: StageSpec, params: Mapping[str, Scalar]) -> tuple[StageKind, Any, Any]:
    kind = KINDS.get(spec.kind)
    if kind is None:
        hint = did_you_mean(spec.kind, KINDS) or f" Kinds: {', '.join(sorted(KINDS))}."
        raise InvalidInput(f"stage {name!r}: kind: unknown stage kind {spec.kind!r}.{hint}", param="kind")
    raw = _substitute_params(spec.params, params, f"stage {name!r}: params")
    try:
        typed = kind.params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"params.{_loc(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(
            f"stage {name!r} ({spec.kind}): {problems}", param=f"stages.{name}.params"
        ) from None
    return kind, raw, typed


def _references(name: str, raw: Any, stages: Mapping[str, Stage | StageSpec]) -> set[str]:
    deps: set[str] = set()
    for text in _walk(raw):
        for match in ANY_REF.findall(text):
            ref = STAGE_REF.fullmatch(match)
            if ref is None:
                raise InvalidInput(
                    f"stage {name!r}: params: {match} is not a reference; write "
                    "${stages.NAME.outputs.KEY} or ${params.NAME}",
                    param=f"stages.{name}.params",
                )
            deps.add(ref.group(1))
    return deps


def _check_outputs(name: str, raw: Any, stages: Mapping[str, Stage]) -> None:
    for text in _walk(raw):
        for other, key in STAGE_REF.findall(text):
            target = stages[other]
            names = target.kind.output_names(target.params)
            if key not in names:
                known = ", ".join(names) or "none"
                raise InvalidInput(
                    f"stage {name!r}: params: ${{stages.{other}.outputs.{key}}}: stage {other!r} "
                    f"({target.kind.kind}) has no output {key!r}; its outputs: {known}",
                    param=f"stages.{name}.params",
                )


def build(body: Any, path: Path, overrides: Sequence[str] = ()) -> Pipeline:
    """Validate a parsed file (plus ``-p`` overrides) into a ``Pipeline``; refuses with the field."""
    if not isinstance(body, dict):
        raise InvalidInput(f"{path}: a pipeline file is a mapping with `name` and `stages`", param="file")
    body = copy.deepcopy(body)  # overrides change the copy, never the caller's
    for text in overrides:
        _apply_override(body, text)
    try:
        spec = PipelineSpec.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{_loc(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"{path}: {problems}", param="file") from None
    stages: dict[str, Stage] = {}
    for name, stage_spec in spec.stages.items():
        if not re.match(NAME_PATTERN, name):
            raise InvalidInput(f"stage {name!r}: names are letters, digits, - and _", param="stages")
        kind, raw, typed = _validate_stage(name, stage_spec, spec.params)
        deps = _references(name, raw, spec.stages) | set(stage_spec.after)
        for dep in sorted(deps):
            if dep not in spec.stages:
                hint = did_you_mean(dep, spec.stages)
                raise InvalidInput(f"stage {name!r}: refers to missing stage {dep!r}.{hint}", param=name)
        stages[name] = Stage(name, kind, raw, typed, tuple(sorted(deps)), stage_spec.description)
    for name, stage in stages.items():
        _check_outputs(name, stage.raw, stages)
    order = _order(stages)
    pipeline = Pipeline(spec.name, spec.description, path.resolve(), dict(spec.params), stages, order)
    _check_gates(pipeline)
    return pipeline


def _order(stages: Mapping[str, Stage]) -> tuple[str, ...]:
    sorter = TopologicalSorter({name: stage.depends_on for name, stage in stages.items()})
    try:
        return tuple(sorter.static_order())
    except CycleError as exc:
        cycle = " → ".join(exc.args[1])
        raise InvalidInput(
            f"stages form a cycle: {cycle}; a stage cannot depend on itself", param="stages"
        ) from None


def _check_gates(pipeline: Pipeline) -> None:
    gates = {name for name, stage in pipeline.stages.items() if stage.kind.kind == "gate"}
    if not gates:
        return
    for name, stage in pipeline.stages.items():
        if stage.kind.promotes and not gates & set(pipeline.upstream([name])):
            raise InvalidInput(
                f"stage {name!r} ({stage.kind.kind}) ships a model but does not come after a gate "
                f"({', '.join(sorted(gates))}); add `after: [{sorted(gates)[0]}]`",
                param=f"stages.{name}.after",
            )


def load(path: Path, overrides: Sequence[str] = ()) -> Pipeline:
    """Read and validate a pipeline file."""
    body = read_yaml_file(path, what="pipeline file", param="file")
    return build(body, Path(path), overrides)


def check_available(pipeline: Pipeline, names: Sequence[str]) -> None:
    """Refuse, before anything runs, a selected stage this installation cannot run."""
    for name in names:
        why = pipeline.stages[name].kind.available()
        if why is not None:
            raise InvalidInput(f"stage {name!r} ({pipeline.stages[name].kind.kind}): {why}", param=name)


def resolve(stage: Stage, outputs: Mapping[str, Mapping[str, str]]) -> StageParams:
    """The stage's parameters with other stages' outputs substituted (they have run)."""

    def sub(value: Any) -> Any:
        if isinstance(value, str):

            def one(match: re.Match[str]) -> str:
                produced = outputs[match.group(1)].get(match.group(2), "")
                if not produced:
                    raise InvalidInput(
                        f"stage {stage.name!r}: {match.group(0)} is empty (stage {match.group(1)!r} "
                        "produced nothing there)",
                        param=stage.name,
                    )
                return produced

            return STAGE_REF.sub(one, value)
        if isinstance(value, Mapping):
            return {k: sub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [sub(v) for v in value]
        return value

    return stage.kind.params.model_validate(sub(stage.raw))
