"""``DriftMonitor``: rolling windows of recent prompts per model version, checked against references.

``observe`` is O(1) and safe on the request path (it only appends to a bounded deque). ``check``
compares one version's window with its reference profile; ``check_async`` and the scheduled loop
(``start(interval_s)``) take the window snapshot on the event loop and run the scipy work in a
thread, so the loop never blocks. Versions without a reference are not tracked. A window that is
still too small is reported as ``insufficient`` in the metrics, never as drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from llmops.errors import InvalidInput, NotFound
from llmops.monitor.drift import DriftReport, compare
from llmops.monitor.drift_config import DriftConfig
from llmops.monitor.drift_features import DriftProfile, DriftSample
from llmops.monitor.metrics import MonitorMetrics

log = logging.getLogger(__name__)
ReportListener = Callable[[DriftReport], None]
T = TypeVar("T")


@dataclass(frozen=True)
class PromptObservation:
    """One logged prompt of live traffic."""

    prompt: str
    at: float
    embedding: tuple[float, ...] | None = None
    label: str | None = None
    token_count: int | None = None


@dataclass
class _Tracked:
    reference: DriftProfile
    window: deque[PromptObservation]


class DriftMonitor:
    """Rolling prompt windows per model version, compared with each version's reference profile."""

    def __init__(
        self,
        config: DriftConfig | None = None,
        *,
        window_size: int = 500,
        max_age_s: float | None = None,
        metrics: MonitorMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window_size < 1:
            raise InvalidInput("window_size must be at least 1", param="window_size")
        self.config = config or DriftConfig()
        self.window_size = window_size
        self.max_age_s = max_age_s
        self.metrics = metrics
        self.clock = clock
        self._tracked: dict[str, _Tracked] = {}
        self._latest: dict[str, DriftReport] = {}
        self._listeners: list[ReportListener] = []
        self._task: asyncio.Task[None] | None = None

    def set_reference(self, model_version: str, profile: DriftProfile) -> None:
        """Track ``model_version`` against ``profile`` (a new reference starts an empty window)."""
        self._tracked[model_version] = _Tracked(profile, deque(maxlen=self.window_size))

    def versions(self) -> list[str]:
        return sorted(self._tracked)

    def tracks(self, model_version: str) -> bool:
        """Whether ``model_version`` has a reference (O(1), for the request path)."""
        return model_version in self._tracked

    def add_listener(self, listener: ReportListener) -> None:
        """Call ``listener(report)`` after every completed check (e.g. to store the report)."""
        self._listeners.append(listener)

    def observe(
        self,
        model_version: str,
        prompt: str,
        *,
        embedding: Sequence[float] | None = None,
        label: str | None = None,
        token_count: int | None = None,
    ) -> bool:
        """Add one prompt to the version's window; False when the version has no reference."""
        tracked = self._tracked.get(model_version)
        if tracked is None:
            return False
        vector = None if embedding is None else tuple(float(value) for value in embedding)
        tracked.window.append(PromptObservation(prompt, self.clock(), vector, label, token_count))
        return True

    def window(self, model_version: str) -> DriftSample:
        """A snapshot of the version's window (observations older than ``max_age_s`` dropped)."""
        tracked = self._get(model_version)
        if self.max_age_s is not None:
            oldest = self.clock() - self.max_age_s
            while tracked.window and tracked.window[0].at < oldest:
                tracked.window.popleft()
        items = list(tracked.window)
        if self.metrics is not None:
            self.metrics.drift_window.labels(model_version=model_version).set(len(items))
        return _sample(items, tokens=tracked.reference.length_unit == "tokens")

    def check(self, model_version: str) -> DriftReport:
        """Compare the version's window with its reference now (blocking; see ``check_async``)."""
        sample = self.window(model_version)
        return self._finish(model_version, self._compare(model_version, sample))

    async def check_async(self, model_version: str) -> DriftReport:
        """``check`` with the statistics in a worker thread."""
        sample = self.window(model_version)
        report = await asyncio.to_thread(self._compare, model_version, sample)
        return self._finish(model_version, report)

    async def check_all(self) -> list[DriftReport]:
        """Check every tracked version with enough prompts; smaller windows are skipped."""
        reports = []
        for version in self.versions():
            try:
                reports.append(await self.check_async(version))
            except InvalidInput as exc:
                log.info("drift check of %s skipped: %s", version, exc.message)
        return reports

    def latest(self, model_version: str) -> DriftReport | None:
        """The version's last report, if it has been checked."""
        return self._latest.get(model_version)

    def start(self, interval_s: float) -> None:
        """Run ``check_all`` every ``interval_s`` seconds in a background task of the running loop."""
        if interval_s <= 0:
            raise InvalidInput("the drift check interval must be positive", param="interval_s")
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(interval_s))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.check_all()
            except Exception:  # a broken check must not end the schedule
                log.exception("scheduled drift check failed")

    def _get(self, model_version: str) -> _Tracked:
        tracked = self._tracked.get(model_version)
        if tracked is None:
            raise NotFound(
                f"model version {model_version!r} has no drift reference; set one first",
                param="model_version",
            )
        return tracked

    def _compare(self, model_version: str, sample: DriftSample) -> DriftReport:
        reference = self._get(model_version).reference
        try:
            return compare(reference, sample, self.config, model_version=model_version)
        except InvalidInput:
            if self.metrics is not None:
                self.metrics.drift_checks.labels(model_version=model_version, outcome="insufficient").inc()
            raise

    def _finish(self, model_version: str, report: DriftReport) -> DriftReport:
        self._latest[model_version] = report
        if self.metrics is not None:
            record_report(self.metrics, report)
        for listener in self._listeners:
            try:
                listener(report)
            except Exception:  # one bad listener must not hide the report from the others
                log.exception("drift report listener failed")
        return report


def record_report(metrics: MonitorMetrics, report: DriftReport) -> None:
    """Export a report as ``llmops_drift_*`` gauges and count the check."""
    version = report.model_version or ""
    for feature in report.features:
        metrics.drift_score.labels(model_version=version, feature=feature.feature).set(feature.score)
        metrics.drift_detected.labels(model_version=version, feature=feature.feature).set(
            float(feature.drifted)
        )
        if feature.p_value is not None:
            metrics.drift_p_value.labels(model_version=version, feature=feature.feature).set(feature.p_value)
    metrics.drift_detected.labels(model_version=version, feature="overall").set(float(report.drifted))
    outcome = "drifted" if report.drifted else "ok"
    metrics.drift_checks.labels(model_version=version, outcome=outcome).inc()


def _sample(items: list[PromptObservation], *, tokens: bool) -> DriftSample:
    embeddings = [item.embedding for item in items]
    labels = [item.label for item in items]
    counts = [item.token_count for item in items]
    return DriftSample.of(
        [item.prompt for item in items],
        embeddings=_all_or_none(embeddings),
        labels=_all_or_none(labels),
        token_counts=_all_or_none(counts) if tokens else None,
    )


def _all_or_none(values: Sequence[T | None]) -> list[T] | None:
    """The values when every observation has one; a partly filled column is left out."""
    present = [value for value in values if value is not None]
    return present if values and len(present) == len(values) else None
