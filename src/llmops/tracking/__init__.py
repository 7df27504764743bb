"""Experiment tracking: experiments, runs, params, per-step metrics, tags and artifacts.

Owns what training and evaluation write about themselves. Imports only ``store``, ``settings`` and
``errors``. Quick use::

    from llmops import tracking
    with tracking.start_run("pretrain", "tiny-1") as run:
        run.log_params({"lr": 3e-4})
        run.log_metric("loss", 2.1, step=10)
"""

from __future__ import annotations

from typing import Any

from llmops.tracking.client import ActiveRun, MetricPoint, RunInfo, Tracker


def start_run(experiment: str, name: str | None = None, **kwargs: Any) -> ActiveRun:
    """Start a run in the default home (``LLMOPS_HOME``); use it as a context manager."""
    from llmops.store.home import open_home

    return Tracker.from_home(open_home()).start_run(experiment, name, **kwargs)


__all__ = ["ActiveRun", "MetricPoint", "RunInfo", "Tracker", "start_run"]
