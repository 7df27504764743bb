"""The gateway: the front door of every model deployment.

Owns: API-key authentication and role checks on every route, rate limits and budgets, routing to
replicas (least outstanding, health checks, circuit breaking, prefix affinity, canary and shadow
arms, fallbacks), the response cache, the request log (batched background writer), the admin
API under ``/api/``, and the monitoring of live traffic (``monitoring.py``: drift per model
version against a reference per deployment, online evaluation, ``POST /v1/feedback``, alerts).
It reaches replicas only through ``Upstream`` (``upstreams.py``): an HTTP replica or an
in-process ASGI app (a serve app handed over by the caller).
Must not import: ``llmops.engine`` (nor anything above the services layer).
"""
