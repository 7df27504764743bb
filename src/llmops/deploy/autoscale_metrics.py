"""Prometheus metrics of the local autoscaler, exported as a textfile.

The supervisor is a detached process without an HTTP server, so it writes its metrics, in the
Prometheus text format, to ``LLMOPS_HOME/metrics/deploy-NAME.prom`` after every decision (atomically:
``prometheus_client.write_to_textfile`` writes a temporary file and renames it). Point node_exporter's
textfile collector (``--collector.textfile.directory=LLMOPS_HOME/metrics``) at the folder to scrape it.

- ``llmops_autoscale_decisions_total{deployment,direction}``: every decision, ``direction`` ``up``,
  ``down`` or ``none`` (steady, cooldown, or a change that failed to apply);
- ``llmops_autoscale_desired_replicas{deployment}``: what the last decision asked for;
- ``llmops_autoscale_current_replicas{deployment}``: how many stable replicas run after it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile

from llmops.store.home import Home

log = logging.getLogger(__name__)

DECISIONS_METRIC = "llmops_autoscale_decisions"
DESIRED_METRIC = "llmops_autoscale_desired_replicas"
CURRENT_METRIC = "llmops_autoscale_current_replicas"
DIRECTIONS = ("up", "down", "none")


def textfile_path(home: Home, deployment: str) -> Path:
    return home.settings.resolved_home() / "metrics" / f"deploy-{deployment}.prom"


class AutoscaleMetrics:
    """The autoscaler's counters and gauges, in a registry of their own, written to ``path``."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter(
            DECISIONS_METRIC, "Autoscaling decisions by direction (up, down, none).",
            ["deployment", "direction"], registry=r,
        )  # fmt: skip
        self.desired = Gauge(
            DESIRED_METRIC, "Replicas the last decision asked for.", ["deployment"], registry=r
        )
        self.current = Gauge(CURRENT_METRIC, "Stable replicas running.", ["deployment"], registry=r)

    def observe(self, deployment: str, direction: str, desired: int, current: int) -> None:
        """Count one decision, set the gauges, and rewrite the textfile."""
        for known in DIRECTIONS:  # every series exists from the first decision (rate() needs a zero)
            self.decisions.labels(deployment, known)
        self.decisions.labels(deployment, direction).inc()
        self.desired.labels(deployment).set(desired)
        self.current.labels(deployment).set(current)
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(str(self.path), self.registry)
        except OSError as exc:  # a full or read-only disk must not stop the supervisor
            log.warning("cannot write the autoscaler's metrics to %s: %s", self.path, exc)
