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

__all__ = ["ServeConfig", "build_app"]
