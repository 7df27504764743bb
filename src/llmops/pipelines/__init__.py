"""Declarative pipelines: an ``llmops.yaml`` of typed stages run in dependency order, cached by the
digest of each stage's kind, parameters, inputs and code, with the store as the cache.

``spec`` reads and validates the file, ``runner`` runs it (``lock`` is its per-pipeline lease),
``cache`` decides what to skip, ``dag`` draws it, ``ci`` exports it to GitHub Actions or GitLab CI,
and ``stages`` holds one module per stage kind over the data, train, evals, registry and deploy
packages.
"""

from __future__ import annotations

from llmops.pipelines.runner import PipelineResult, Runner, StageReport
from llmops.pipelines.spec import Pipeline, load

__all__ = ["Pipeline", "PipelineResult", "Runner", "StageReport", "load"]
