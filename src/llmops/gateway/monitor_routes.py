"""Monitoring routes: ``POST /v1/feedback`` and the monitoring part of the admin API.

* ``POST /v1/feedback`` (consumer): feedback on a response, by its ``x-request-id`` or, for answers
  this worker gave recently (the last 100,000), by the response's own ``id``. A key may rate
  its own requests (developer and above: any request); malformed bodies get a 400 naming the field,
  an unknown request a 404 on ``request_id``.
* ``PUT /api/deployments/{name}/drift-reference`` (deployer): a dataset version's prompts become the
  drift reference of every model version the deployment serves.
* ``GET /api/monitor/drift`` and ``POST /api/monitor/drift/check`` (developer): references and the
  latest reports, or a check now.
* ``GET /api/monitor/alerts`` (developer): alerts firing and past; ``GET /api/monitor/online-eval``
  (developer): online-evaluation scores per model version and metric.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from llmops.errors import NotFound
from llmops.gateway.auth import Principal
from llmops.gateway.monitoring import GatewayMonitor
from llmops.gateway.policy import RequireRole
from llmops.gateway.service import Gateway
from llmops.monitor.alert_store import list_stored_alerts
from llmops.monitor.feedback import Feedback
from llmops.monitor.feedback_store import FeedbackTarget
from llmops.monitor.model_refs import resolve_model_version
from llmops.monitor.online_eval_store import online_eval_summary
from llmops.registry.references import MODEL_REF_PATTERN
from llmops.security.json_input import loads_json
from llmops.security.roles import Role

CONSUMER = Depends(RequireRole(Role.CONSUMER))
DEVELOPER = Depends(RequireRole(Role.DEVELOPER))
DEPLOYER = Depends(RequireRole(Role.DEPLOYER))


class ReferenceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str = Field(
        pattern=r"^\s*[A-Za-z0-9._-]+(@[0-9]{1,18})?\s*$",
        description="Dataset version (name@N) whose prompts are the reference.",
    )
    reason: str | None = Field(None, description="Why, for the audit log.")


def _monitor(request: Request) -> GatewayMonitor:
    gateway: Gateway = request.app.state.gateway
    if gateway.monitor is None:
        raise NotFound("monitoring is off in this gateway; set monitor.enabled: true", code="monitor_off")
    return gateway.monitor


def _json_body(raw: bytes) -> Any:
    return loads_json(raw, what="the feedback body")


def _feedback_body() -> dict[str, Any]:
    """The feedback body as ``parse_feedback`` validates it: something besides the request id."""
    schema = Feedback.model_json_schema()
    text = {"type": "string", "pattern": "\\S"}
    schema["anyOf"] = [
        {"required": ["score"], "properties": {"score": {"type": "number"}}},
        {"required": ["thumbs"], "properties": {"thumbs": {"type": "string"}}},
        {"required": ["comment"], "properties": {"comment": text}},
        {"required": ["corrected_output"], "properties": {"corrected_output": text}},
    ]
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _feedback_route(router: APIRouter) -> None:
    @router.post(
        "/v1/feedback",
        status_code=201,
        openapi_extra=_feedback_body(),
        tags=["monitoring"],
        summary="Feedback (score or thumbs, comment, corrected output) on a response, by its request id.",
    )
    async def feedback(request: Request, principal: Principal = CONSUMER) -> JSONResponse:
        monitor = _monitor(request)

        def may_rate(target: FeedbackTarget) -> bool:
            return target.key_id == principal.key_id or principal.key.role.allows(Role.DEVELOPER)

        body = _json_body(await request.body())
        gateway: Gateway = request.app.state.gateway
        answered_as = None
        if isinstance(body, dict) and isinstance(body.get("request_id"), str):
            # a response's own id (chatcmpl-..., cmpl-...) stands for the request that got it; this
            # worker remembers its recent ones, the request log holds every worker's
            answered_as = gateway.pipeline.request_of(body["request_id"])
        stored = await monitor.monitor.submit_feedback(
            body, key_id=principal.key_id, may_rate=may_rate, answered_as=answered_as
        )
        return JSONResponse(stored.to_json(), status_code=201)


def _drift_routes(router: APIRouter) -> None:
    @router.put(
        "/api/deployments/{name}/drift-reference",
        tags=["admin"],
        summary="Set the drift reference of a deployment's model versions from a dataset version.",
    )
    async def set_reference(
        name: str, body: ReferenceUpdate, request: Request, principal: Principal = DEPLOYER
    ) -> dict[str, Any]:
        monitor = _monitor(request)
        deployment = monitor.table.get(name)
        stored = await monitor.set_reference(
            deployment, body.dataset, actor=f"key:{principal.key_id}", reason=body.reason
        )
        return {
            "deployment": name,
            "model_versions": [ref.model_version for ref in stored],
            "digest": stored[0].digest,
            "source": stored[0].source,
        }

    @router.get("/api/monitor/drift", tags=["admin"], summary="Drift references and the latest reports.")
    async def drift(request: Request, principal: Principal = DEVELOPER) -> dict[str, Any]:
        drift_monitor = _monitor(request).monitor.drift
        latest = [drift_monitor.latest(version) for version in drift_monitor.versions()]
        return {
            "model_versions": drift_monitor.versions(),
            "reports": [report.model_dump(mode="json") for report in latest if report is not None],
        }

    @router.post(
        "/api/monitor/drift/check",
        tags=["admin"],
        summary="Check drift of every tracked model version now (windows too small are skipped).",
    )
    async def check(request: Request, principal: Principal = DEVELOPER) -> list[dict[str, Any]]:
        reports = await _monitor(request).monitor.drift.check_all()
        return [report.model_dump(mode="json") for report in reports]


def _status_routes(router: APIRouter) -> None:
    @router.get("/api/monitor/alerts", tags=["admin"], summary="Alerts firing now and in the past.")
    async def alerts(
        request: Request,
        status: Literal["firing", "resolved"] | None = Query(None, description="firing or resolved."),
        limit: int = Query(100, ge=1, le=1000),
        principal: Principal = DEVELOPER,
    ) -> list[dict[str, Any]]:
        monitor = _monitor(request)
        records = await asyncio.to_thread(list_stored_alerts, monitor.home.store, status=status, limit=limit)
        return [record.model_dump(mode="json") for record in records]

    @router.get(
        "/api/monitor/online-eval",
        tags=["admin"],
        summary="Online-evaluation scores per model version and metric (stored results).",
    )
    async def online_eval(
        request: Request,
        version: str | None = Query(
            None, pattern=MODEL_REF_PATTERN, description="Only this model: name@N, name@alias or name."
        ),
        principal: Principal = DEVELOPER,
    ) -> list[dict[str, Any]]:
        monitor = _monitor(request)
        if version is not None:
            home = monitor.home
            version = await asyncio.to_thread(resolve_model_version, home.store, home.artifacts, version)
        summary = await asyncio.to_thread(online_eval_summary, monitor.home.store, model_version=version)
        return [item.model_dump(mode="json") for item in summary]


def install_monitor_routes(router: APIRouter) -> None:
    """Add the feedback route and the monitoring admin routes to ``router``."""
    _feedback_route(router)
    _drift_routes(router)
    _status_routes(router)
