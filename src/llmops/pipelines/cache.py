"""Stage caching, with the store as the cache.

A stage's cache key is the sha256 of (kind, resolved parameters, digests of its inputs, version of
the code that runs it). The cache record is the stage's tracking run in the ``pipeline.stage``
experiment, tagged with the key and its outputs; it counts only once the run is FINISHED, and the
runner finishes it only after every output is registered. A stage killed half-way leaves a RUNNING
(later KILLED) run, which is never a cache hit. There is no second cache directory.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from llmops.pipelines.spec import Stage
from llmops.pipelines.stages import StageParams
from llmops.pipelines.stages.base import dump
from llmops.tracking import RunInfo, Tracker

STAGE_EXPERIMENT = "pipeline.stage"
PIPELINE_EXPERIMENT = "pipeline"


@dataclass(frozen=True)
class CacheKey:
    kind: str
    params: dict[str, Any]
    inputs: dict[str, str]
    code: str

    @property
    def digest(self) -> str:
        body = {"kind": self.kind, "params": self.params, "inputs": self.inputs, "code": self.code}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def as_run_params(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "params": json.dumps(self.params, sort_keys=True),
            "inputs": json.dumps(self.inputs, sort_keys=True),
            "code": self.code,
        }


def key_of(stage: Stage, params: StageParams, inputs: dict[str, str]) -> CacheKey:
    return CacheKey(stage.kind.kind, dump(params), dict(inputs), stage.kind.code_version())


def lookup(tracker: Tracker, pipeline: str, stage: str, key: CacheKey) -> RunInfo | None:
    """The newest finished run of this stage with this key."""
    found = tracker.find_runs(
        STAGE_EXPERIMENT, {"pipeline": pipeline, "stage": stage, "cache_key": key.digest}
    )
    return found[0] if found else None


def previous(tracker: Tracker, pipeline: str, stage: str) -> RunInfo | None:
    """The newest finished run of this stage, whatever its key (to say what changed)."""
    found = tracker.find_runs(STAGE_EXPERIMENT, {"pipeline": pipeline, "stage": stage})
    return found[0] if found else None


def outputs_of(run: RunInfo) -> dict[str, str]:
    return dict(json.loads(run.tags.get("outputs", "{}")))


def _diff(label: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    changes = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            before = _short(old.get(key, "(unset)"))
            after = _short(new.get(key, "(unset)"))
            changes.append(f"{label} {key}: {before} → {after}")
    return changes


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text[:12] if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text[:60]


def why_changed(before: RunInfo | None, key: CacheKey) -> str:
    """What differs from the stage's previous finished run, in DVC-status words."""
    if before is None:
        return "never ran"
    old_params = json.loads(before.params.get("params", "{}"))
    old_inputs = json.loads(before.params.get("inputs", "{}"))
    changes = _diff("param", old_params, key.params) + _diff("input", old_inputs, key.inputs)
    if before.params.get("code") != key.code:
        changes.append(f"code {before.params.get('code')} → {key.code}")
    return "changed: " + "; ".join(changes) if changes else "changed"
