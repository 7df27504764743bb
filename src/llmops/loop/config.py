"""``loop.yaml``: the typed configuration of one maintenance loop (strict; errors name the field path).

Example::

    deployment: support
    model: support-bot                 # registered model the deployment serves (alias from rollout.alias)
    triggers:
      - {kind: drift, cooldown: 6h, max_per_day: 2, window: 24h}
      - {kind: quality_drop, source: feedback, min_samples: 30, min_drop: 0.1, cooldown: 12h}
      - {kind: schedule, every: 7d}
      - {kind: new_data, min_rows: 200}
    curation:
      labels: [{kind: corrections}, {kind: thumbs_up}]
      replay: {dataset: support-train@1, share: 0.3}
      eval_slice: 0.3
      min_rows: 50
    retrain: {recipe: recipes/support-finetune.yaml, method: full}
    gate: {suite: suites/support.yaml, metric: exact_match}
    rollout: {steps: [{weight: 10}, {weight: 100}]}

Nothing here knows a task: the same loop serves any deployment, metric and dataset it names.
References to the store (deployment, model, datasets, metrics) are checked at start-up by
``preflight``; this module checks only the file's shape.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from llmops.deploy.policy import RolloutPolicy
from llmops.errors import InvalidInput, NotFound
from llmops.security.yaml_input import load_yaml

_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _seconds(value: Any) -> Any:
    """``90``, ``"90s"``, ``"30m"``, ``"6h"``, ``"7d"``, ``"1w"`` -> seconds (a float)."""
    if isinstance(value, str):
        match = _SPAN.match(value.strip())
        if match is None:
            raise ValueError(f"{value!r} is not a duration; write seconds or 30s, 15m, 6h, 7d, 1w")
        return float(match.group(1)) * _UNIT_S[match.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _TriggerBase(_Strict):
    name: str | None = Field(None, description="Name in history and status; default the kind.")
    cooldown: Duration = Field(
        6 * 3600.0, description="After a cycle this trigger started, wait this long before it may fire again."
    )
    max_per_day: int = Field(
        2, ge=1, description="Budget: at most this many cycles started by this trigger in any 24 hours."
    )


class DriftTrigger(_TriggerBase):
    """Fires when the deployment's live prompts have drifted from the champion's drift reference."""

    kind: Literal["drift"] = Field(description="Drift of live prompts (monitor.drift).")
    window: Duration = Field(
        24 * 3600.0, gt=0, description="Live prompts of this long ago until now form the window."
    )
    min_window: int = Field(50, ge=2, description="Fewest live prompts before drift is judged.")
    max_window: int = Field(5000, ge=2, description="Most recent live prompts compared.")


class QualityDropTrigger(_TriggerBase):
    """Fires when an online-evaluation or feedback score dropped against a baseline period.

    The recent window is compared with the baseline period before it by a one-sided Mann-Whitney U
    test: it fires only with ``min_samples`` on each side, a mean drop of at least ``min_drop`` and
    ``p < alpha``, so one bad window of a few requests never starts a cycle.
    """

    kind: Literal["quality_drop"] = Field(description="A drop of a live quality score.")
    source: Literal["online_eval", "feedback"] = Field(
        description="Which score: online evaluation or feedback."
    )
    metric: str | None = Field(None, description="Online-evaluation metric id (source online_eval only).")
    window: Duration = Field(3600.0, gt=0, description="The recent window judged.")
    baseline: Duration = Field(7 * 86400.0, gt=0, description="The baseline period just before the window.")
    min_samples: int = Field(30, ge=5, description="Scores needed on each side; fewer never fires.")
    min_drop: float = Field(0.05, gt=0, le=1, description="Baseline mean minus window mean (scores 0..1).")
    alpha: float = Field(0.01, gt=0, lt=1, description="Significance level of the one-sided test.")

    @model_validator(mode="after")
    def _metric_matches_source(self) -> QualityDropTrigger:
        if self.source == "online_eval" and not self.metric:
            raise ValueError("metric: name the online-evaluation metric id (e.g. refusal)")
        if self.source == "feedback" and self.metric:
            raise ValueError("metric: applies to source online_eval only; remove it")
        return self


class ScheduleTrigger(_TriggerBase):
    """Fires when the last cycle of this loop started at least ``every`` ago (or there was none)."""

    kind: Literal["schedule"] = Field(description="A fixed schedule.")
    every: Duration = Field(gt=0, description="Time between scheduled cycles.")
    cooldown: Duration = Field(
        0.0, description="Extra wait after a cycle (the schedule already spaces them)."
    )


class NewDataTrigger(_TriggerBase):
    """Fires when ``min_rows`` new labelled rows (corrections, thumbs-up) arrived since the last cycle."""

    kind: Literal["new_data"] = Field(description="New labelled feedback rows.")
    min_rows: int = Field(ge=1, description="New labelled rows needed.")


Trigger = Annotated[
    DriftTrigger | QualityDropTrigger | ScheduleTrigger | NewDataTrigger, Field(discriminator="kind")
]


class KeepThumbsUp(_Strict):
    """Answers users gave thumbs up (or a score >= min_score) are kept as they were."""

    kind: Literal["thumbs_up"] = Field(description="Keep liked answers.")
    min_score: float = Field(0.8, ge=0, le=1, description="A feedback score at least this counts as liked.")


class Corrections(_Strict):
    """The corrected answers users sent as feedback become the labels."""

    kind: Literal["corrections"] = Field(description="Corrected outputs from feedback.")


class Teacher(_Strict):
    """A teacher model behind an OpenAI-compatible URL answers each prompt (fails closed when unreachable)."""

    kind: Literal["teacher"] = Field(description="A teacher model through an OpenAI-compatible API.")
    url: str = Field(description="Base URL of the server, e.g. http://127.0.0.1:8001/v1.")
    model: str = Field(description="Model name the server expects.")
    api_key_env: str | None = Field(None, description="Environment variable holding its API key, if any.")
    max_tokens: int = Field(256, ge=1, description="Most tokens per answer.")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature.")
    timeout_s: float = Field(30.0, gt=0, description="Per-request timeout.")


class HumanFile(_Strict):
    """A human-labelled JSONL file (prompt, completion) labels the prompts it contains."""

    kind: Literal["file"] = Field(description="A human-labelled JSONL file.")
    path: Path = Field(description="JSONL with 'prompt' and 'completion' per line.")


LabelSource = Annotated[KeepThumbsUp | Corrections | Teacher | HumanFile, Field(discriminator="kind")]


class Replay(_Strict):
    """A share of the original training data mixed into the new training set, against forgetting."""

    dataset: str = Field(description="Dataset reference of the original training data (NAME@VERSION).")
    share: float = Field(0.3, ge=0, lt=1, description="Share of the training rows that come from replay.")


class Dedup(_Strict):
    exact: bool = Field(True, description="Drop exact duplicates (normalised text).")
    near_threshold: float | None = Field(
        0.85,
        gt=0,
        lt=1,
        description="Drop near-duplicates at this MinHash Jaccard (below 1; None: off). Templated "
        "prompts that differ in a word or two are near-duplicates at 0.85; raise it to keep them.",
    )


class Curation(_Strict):
    """How a cycle's training set is built from production traffic."""

    labels: list[LabelSource] = Field(
        min_length=1, description="Label sources, tried in order for each prompt; the first that labels wins."
    )
    scrub_pii: bool = Field(True, description="Redact personal data with the security PII detector.")
    dedup: Dedup = Field(default_factory=Dedup)
    eval_slice: float = Field(
        0.3, gt=0, lt=1, description="Share of curated rows held out as the fresh evaluation slice."
    )
    min_eval_rows: int = Field(10, ge=1, description="Fewest fresh evaluation rows; fewer stops the cycle.")
    min_rows: int = Field(20, ge=1, description="Fewest curated training rows; fewer stops the cycle.")
    replay: Replay | None = Field(None, description="Replay of the original training data.")
    max_requests: int = Field(20_000, ge=1, description="Most logged requests read per cycle.")
    dataset_name: str | None = Field(None, description="Name of the curated datasets; default LOOP-curated.")
    seed: int = Field(0, description="Seed of the held-out split and the replay sample.")


class Retrain(_Strict):
    """How the candidate is trained: a recipe, started from the champion (directly, or through a pipeline)."""

    recipe: Path = Field(description="Training recipe YAML; its base and train data are set by the loop.")
    method: Literal["lora", "full"] = Field("full", description="LoRA adapter or full fine-tune.")
    candidate_name: str | None = Field(None, description="Registered name of candidates; default the model.")
    pipeline: Path | None = Field(
        None,
        description="Train through this llmops.yaml with the pipelines runner instead: it declares the "
        "params `train`, `base` and `model`, which each cycle sets, and a train stage running the recipe.",
    )
    stage: str = Field("train", min_length=1, description="Pipeline stage whose `model` is the candidate.")


class Gate(_Strict):
    """What a candidate must show before it may roll out."""

    suite: Path = Field(description="The original evaluation suite (its dataset is the original domain).")
    metric: str = Field(description="Metric id of the suite that decides.")
    min_improvement: float = Field(
        0.0, ge=0, description="The fresh-slice improvement's interval must lie above this (default: zero)."
    )
    max_regression: float = Field(
        0.05,
        ge=0,
        description="Non-inferiority margin: the original-suite improvement's interval may reach down to "
        "-this, no further (0 demands a significant improvement there too).",
    )
    limit: int | None = Field(None, ge=1, description="Evaluate at most this many examples per suite.")


class LoopConfig(_Strict):
    """One maintenance loop over one deployment."""

    name: str | None = Field(
        None, description="Loop name (cycles are recorded under it); default the deployment."
    )
    deployment: str = Field(min_length=1, description="The gateway deployment whose traffic is watched.")
    model: str = Field(min_length=1, description="The registered model the deployment serves.")
    triggers: list[Trigger] = Field(min_length=1, description="Conditions that start a cycle.")
    curation: Curation
    retrain: Retrain
    gate: Gate
    rollout: RolloutPolicy = Field(
        default_factory=RolloutPolicy, description="How a passing candidate rolls out."
    )
    deployment_spec: Path | None = Field(
        None, description="The deployment's deployment.yaml, which the rollout controller drives (run, once)."
    )
    target: str = Field("local", description="Deploy target that starts candidate replicas (rollout).")
    interval: Duration = Field(60.0, gt=0, description="`loop run`: how often triggers are checked.")
    lease_ttl: Duration = Field(60.0, ge=5, description="Lease of a cycle; renewed while it works.")

    @property
    def loop_name(self) -> str:
        return self.name or self.deployment

    @property
    def champion_ref(self) -> str:
        return f"{self.model}@{self.rollout.alias}"

    @property
    def dataset_name(self) -> str:
        return self.curation.dataset_name or f"{self.loop_name}-curated"

    @model_validator(mode="after")
    def _distinct_trigger_names(self) -> LoopConfig:
        labels = [trigger_label(trigger) for trigger in self.triggers]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ValueError(f"triggers: names {twice} are used twice; give each a distinct 'name'")
        return self


def trigger_label(trigger: Trigger) -> str:
    """The name a trigger is recorded under: its ``name``, or its kind."""
    return trigger.name or trigger.kind


def parse_config(data: Any, *, source: str = "loop.yaml", base_dir: Path | None = None) -> LoopConfig:
    """Validate a loaded mapping; relative file paths resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: a loop config must be a YAML mapping", param="config")
    try:
        config = LoopConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(source, exc) from None
    if base_dir is None:
        return config
    return _with_base_dir(config, base_dir)


def load_config(path: str | Path) -> LoopConfig:
    """Read and validate ``loop.yaml``; every problem is ``InvalidInput`` naming the field path."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"loop config {path} does not exist; pass --config PATH", param="config")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML: {exc}", param="config") from None
    return parse_config(data, source=str(path), base_dir=path.parent)


def _with_base_dir(config: LoopConfig, base: Path) -> LoopConfig:
    def resolve(path: Path) -> Path:
        return path if path.is_absolute() else base / path

    labels = [
        label.model_copy(update={"path": resolve(label.path)}) if isinstance(label, HumanFile) else label
        for label in config.curation.labels
    ]
    return config.model_copy(
        update={
            "curation": config.curation.model_copy(update={"labels": labels}),
            "retrain": config.retrain.model_copy(
                update={
                    "recipe": resolve(config.retrain.recipe),
                    "pipeline": resolve(config.retrain.pipeline) if config.retrain.pipeline else None,
                }
            ),
            "gate": config.gate.model_copy(update={"suite": resolve(config.gate.suite)}),
            "deployment_spec": resolve(config.deployment_spec) if config.deployment_spec else None,
        }
    )


def _config_error(source: str, exc: ValidationError) -> InvalidInput:
    problems = []
    for error in exc.errors():
        where = field_path(error["loc"]) or "(top level)"
        problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    first = field_path(exc.errors()[0]["loc"]) if exc.errors() else None
    return InvalidInput(f"{source}: invalid loop config: " + "; ".join(problems), param=first or None)


_UNION_TAGS = {
    "drift",
    "quality_drop",
    "schedule",
    "new_data",
    "thumbs_up",
    "corrections",
    "teacher",
    "file",
}


def field_path(loc: tuple[int | str, ...]) -> str:
    """``('triggers', 0, 'drift', 'cooldown')`` -> ``triggers[0].cooldown`` (the union tag is noise)."""
    text = ""
    previous: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not (isinstance(previous, int) and part in _UNION_TAGS):
            text += f".{part}" if text else str(part)
        previous = part
    return text
