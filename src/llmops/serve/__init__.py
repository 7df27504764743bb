"""The OpenAI-compatible HTTP app of one model replica, with the engine behind it.

Owns: the request and response shapes of the OpenAI API subset a replica serves (``protocol``,
``responses``), the FastAPI app (``build_app``) with its pure ASGI middleware (request ids, body
limits, Prometheus metrics), the fan-out of ``n`` choices onto backend requests, and resolving the
model a replica loads (registry reference or local directory) and running it under uvicorn.

Imports engine types, registry, store, settings and errors; never the gateway (the gateway reaches
replicas through its ``Upstream`` interface), never the CLI.
"""

from __future__ import annotations

from llmops.serve.app import build_app
from llmops.serve.config import ServeConfig
from llmops.serve.metrics import QUEUE_DEPTH_METRIC, RUNNING_METRIC, TTFT_METRIC

__all__ = ["QUEUE_DEPTH_METRIC", "RUNNING_METRIC", "TTFT_METRIC", "ServeConfig", "build_app"]
