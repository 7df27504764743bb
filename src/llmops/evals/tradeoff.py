"""The trade-off record of an optimised version against its source: quality, speed, memory.

Quality: the candidate is evaluated on the source's evaluation suite (the suite of the source's
latest stored evaluation run, or the one given) and compared with the source example by example
with the paired statistics of ``evals.stats`` (difference with its confidence interval, p-value,
verdict). Speed and memory (optional, bounded by ``ServingSettings``): both versions served by the
in-process engine in the same run (``evals.serving_bench``), reported as candidate / source ratios.
The record is stored on the candidate version as the tag ``tradeoff/<source ref>``; ``models
compare`` prints it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops.errors import InvalidInput, NotFound
from llmops.evals.results import Comparison
from llmops.evals.runner import EXPERIMENT, EvalRunner
from llmops.evals.serving_bench import ServingSettings, measure_serving
from llmops.evals.suite import load_suite
from llmops.registry import Registry
from llmops.store.home import Home

TAG_PREFIX = "tradeoff/"
FALLBACK_PROMPTS = (
    "Summarise what a model registry records about each version.",
    "Explain continuous batching in one sentence.",
    "List three reasons to quantise a language model.",
    "What does a canary rollout protect against?",
)
# speed and memory rows: (key, label, higher is better)
SERVING_ROWS = (
    ("decode_tokens_per_s", "decode tokens/s, single stream", True),
    ("concurrent_tokens_per_s", "tokens/s at {concurrency} concurrent", True),
    ("ttft_p95_s", "p95 TTFT at {concurrency} concurrent (s)", False),
    ("weight_bytes", "weight memory", False),
    ("disk_bytes", "model size on disk", False),
)


@dataclass(frozen=True)
class TradeoffRecord:
    candidate: str
    baseline: str
    suite: str | None
    quality: list[dict[str, Any]] = field(default_factory=list)
    serving: dict[str, dict[str, float]] = field(default_factory=dict)  # "baseline"/"candidate" -> values
    settings: dict[str, int] = field(default_factory=dict)
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "baseline": self.baseline,
            "suite": self.suite,
            "quality": self.quality,
            "serving": self.serving,
            "settings": self.settings,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> TradeoffRecord:
        return cls(
            body["candidate"],
            body["baseline"],
            body.get("suite"),
            list(body.get("quality", [])),
            dict(body.get("serving", {})),
            dict(body.get("settings", {})),
            body.get("note"),
        )

    def ratio(self, key: str) -> float | None:
        base = self.serving.get("baseline", {}).get(key)
        cand = self.serving.get("candidate", {}).get(key)
        return cand / base if base and cand is not None else None


def source_suite(runner: EvalRunner, baseline_ref: str, into: Path) -> Path | None:
    """The suite file of the baseline's latest stored evaluation run, written under ``into``."""
    model = runner.registry.get(baseline_ref)
    runs = runner.tracker.find_runs(EXPERIMENT, {"model_digest": model.digest})
    for info in runs:  # newest first
        if "suite.yaml" in info.artifacts:
            path = into / "suite.yaml"
            path.write_bytes(runner.home.artifacts.read_bytes(info.artifacts["suite.yaml"]))
            return path
    return None


def quality_rows(comparison: Comparison) -> list[dict[str, Any]]:
    rows = []
    for metric in comparison.metrics:
        interval = metric.interval
        rows.append(
            {
                "metric": metric.info.metric_id,
                "baseline": metric.baseline,
                "candidate": metric.candidate,
                "difference": metric.difference,
                "low": interval.low if interval else None,
                "high": interval.high if interval else None,
                "confidence": interval.confidence if interval else None,
                "p_value": metric.p_value,
                "verdict": metric.verdict,
                "n": metric.n_pairs,
                "error": metric.error,
            }
        )
    return rows


def _prompts(runner: EvalRunner, suite_path: Path | None, count: int) -> list[str]:
    if suite_path is None:
        return list(FALLBACK_PROMPTS)
    suite = load_suite(suite_path)
    rows = runner.datasets.rows(runner.datasets.get(suite.dataset))[:count]
    prompts = [str(row.get(suite.fields.input or "", "")) for row in rows]
    return [p for p in prompts if p] or list(FALLBACK_PROMPTS)


def measure_tradeoff(
    home: Home,
    candidate: str,
    baseline: str,
    *,
    suite: Path | None = None,
    limit: int | None = None,
    serving: ServingSettings | None = None,
    runner: EvalRunner | None = None,
) -> TradeoffRecord:
    """Evaluate and (when ``serving`` is given) benchmark ``candidate`` against ``baseline``; store
    the record on the candidate and return it."""
    runner = runner or EvalRunner(home)
    cand = runner.registry.get(candidate)
    base = runner.registry.get(baseline)
    if cand.digest == base.digest:
        raise InvalidInput(
            f"{cand.ref} and {base.ref} are the same files; compare two versions", param="model"
        )
    for version in (cand, base):
        if version.format != "hf-causal-lm":
            raise InvalidInput(f"{version.ref} is a {version.format}; compare causal LMs", param="model")
    with tempfile.TemporaryDirectory(prefix="llmops-tradeoff-") as tmp:
        suite_path = suite or source_suite(runner, base.ref, Path(tmp))
        quality: list[dict[str, Any]] = []
        note = None
        suite_name = None
        if suite_path is None:
            note = f"{base.ref} has no stored evaluation run: quality not compared (pass a suite)"
        else:
            comparison, _, _ = runner.compare(suite_path, cand.ref, base.ref, limit)
            quality, suite_name = quality_rows(comparison), comparison.suite
        measured: dict[str, dict[str, float]] = {}
        settings: dict[str, int] = {}
        if serving is not None:
            prompts = _prompts(runner, suite_path, max(serving.concurrency, serving.single_stream_requests))
            dirs = [runner.registry.local_path(base.ref), runner.registry.local_path(cand.ref)]
            base_m, cand_m = measure_serving(dirs, prompts, serving)
            measured = {"baseline": base_m.as_dict(), "candidate": cand_m.as_dict()}
            settings = {k: int(v) for k, v in serving.__dict__.items()}
    record = TradeoffRecord(cand.ref, base.ref, suite_name, quality, measured, settings, note)
    runner.registry.merge_tags(
        cand.ref, {TAG_PREFIX + base.ref: record.to_json()}, reason=f"trade-off against {base.ref}"
    )
    return record


def stored_tradeoff(home: Home, candidate: str, baseline: str) -> TradeoffRecord:
    """The stored record of ``candidate`` against ``baseline``; NotFound naming the fix."""
    registry = Registry.from_home(home)
    cand = registry.get(candidate)
    base = registry.get(baseline)
    body = cand.tags.get(TAG_PREFIX + base.ref)
    if not isinstance(body, dict):
        raise NotFound(
            f"no trade-off record of {cand.ref} against {base.ref}; measure it with "
            f"`llmops models compare {cand.ref} {base.ref} --measure`",
            param="model",
        )
    return TradeoffRecord.from_json(body)
