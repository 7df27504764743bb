"""Admin routes that define deployments and arms through the store (deployer role).

A supervisor (``llmops deploy apply``) defines the deployment it runs with ``PUT
/api/deployments/NAME`` and registers replicas as they become ready; a rollout controller adds a
candidate's arm (``PUT .../arms/canary``, weight 0 unless given) and removes it afterwards. Each
change applies in this worker at once and is persisted with an audit event; every other worker
applies it within ``admin_sync_s`` (``overrides.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from llmops.errors import Conflict
from llmops.gateway.admin import DEPLOYER, deployment_view
from llmops.gateway.admin import _gateway as gateway_of
from llmops.gateway.admin import _persist as persist
from llmops.gateway.auth import Principal
from llmops.gateway.config import ArmConfig, DeploymentConfig
from llmops.gateway.deployments import Arm, Deployment, resolve_version
from llmops.gateway.routing import Replica
from llmops.gateway.service import Gateway, registry_resolver
from llmops.registry.references import MODEL_REF_PATTERN
from llmops.store import audit
from llmops.store.schema import GatewayDeployment, utcnow

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid body; the message names the field and the fix."},
    401: {"description": "No or unknown API key."},
    403: {"description": "The key's role is below deployer."},
    404: {"description": "No such deployment or arm."},
    409: {
        "description": "The change conflicts with the deployment's state (the message says how to proceed)."
    },
}


def actor(principal: Principal) -> str:
    return f"key:{principal.key_id}"


class DeploymentPut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    deployment: DeploymentConfig = Field(
        description="Settings (price, limits, timeouts, guardrails) and, for a new deployment, its arms. "
        "Arms of an existing deployment keep their replicas and weights; arms it lacks are added."
    )
    reason: str | None = None


class ArmPut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(
        pattern=MODEL_REF_PATTERN,
        description="Registry reference the arm serves (support-bot@4, support-bot@candidate).",
    )
    weight: float | None = Field(
        None, ge=0, strict=True, allow_inf_nan=False, description="Share of traffic; a new arm defaults to 0."
    )
    upstream_model: str | None = Field(
        None, description="Model name its replicas serve; default the deployment's."
    )
    reason: str | None = None


def _check_fallbacks(gateway: Gateway, config: DeploymentConfig) -> None:
    unknown = [f for f in config.fallbacks if f == config.name or f not in gateway.table.names()]
    if unknown:
        raise Conflict(
            f"deployment.fallbacks: {unknown} are not other deployments of this gateway",
            param="deployment.fallbacks",
            code="unknown_fallbacks",
        )


def _new_arm(gateway: Gateway, name: str, arm: ArmConfig) -> Arm:
    """An arm of deployment ``name`` from its config (blocking: resolves the reference and URLs)."""
    ref = arm.model or f"{name}@production"
    make = gateway.overrides.make_upstream
    replicas = [Replica(make(u.url, u.name)) for u in arm.upstreams]
    version = resolve_version(registry_resolver(gateway.home), ref)
    return Arm(arm.name, ref, version, arm.weight, arm.upstream_model or name, replicas)


def _upsert(gateway: Gateway, name: str, config: DeploymentConfig) -> tuple[Deployment, bool]:
    """Apply ``config`` to the table; True when the deployment is new."""
    settings = config.model_copy(update={"arms": []})
    if name not in gateway.table.names():
        deployment = Deployment(settings, [_new_arm(gateway, name, a) for a in config.arms], from_store=True)
        gateway.table.add(deployment)
        return deployment, True
    deployment = gateway.table.get(name)
    deployment.config, deployment.from_store = settings, True
    have = {a.name for a in deployment.arms}
    deployment.arms += [_new_arm(gateway, name, a) for a in config.arms if a.name not in have]
    return deployment, False


def _delete_row(gateway: Gateway, name: str, who: str, reason: str | None) -> None:
    """Leave a tombstone (other workers remove the deployment when they see it change)."""
    now = utcnow()
    with gateway.home.store.transaction() as session:
        row = session.get(GatewayDeployment, name, with_for_update=True)
        before = dict(row.spec) if row else None
        if row is None:
            session.add(GatewayDeployment(name=name, spec={"deleted": True}, updated_by=who, updated_at=now))
        else:
            row.spec, row.updated_by, row.updated_at = {"deleted": True}, who, now
        audit.append(
            session, actor=who, action="gateway.deployment.delete", target=f"deployment:{name}",
            reason=reason, before=before, after=None,
        )  # fmt: skip
    gateway.overrides.mark_seen(name, now)


def _deployment_routes(router: APIRouter) -> None:
    @router.put(
        "/api/deployments/{name}",
        tags=["admin"],
        summary="Define a deployment through the store (created: 201, updated: 200).",
        responses={200: {"description": "Updated."}, 201: {"description": "Created."}, **ERRORS},
    )
    async def put_deployment(
        name: str, body: DeploymentPut, request: Request, principal: Principal = DEPLOYER
    ) -> Any:
        gateway = gateway_of(request)
        if body.deployment.name != name:
            raise Conflict(
                f"deployment.name {body.deployment.name!r} differs from the path's {name!r}",
                param="deployment.name",
            )
        _check_fallbacks(gateway, body.deployment)
        deployment, created = await asyncio.to_thread(_upsert, gateway, name, body.deployment)
        await asyncio.to_thread(
            persist, gateway, deployment, "all", actor(principal), "gateway.deployment.put", body.reason
        )
        return JSONResponse(deployment_view(deployment), status_code=201 if created else 200)

    @router.delete(
        "/api/deployments/{name}",
        tags=["admin"],
        summary="Remove a deployment defined through the store.",
        responses={200: {"description": "Removed."}, **ERRORS},
    )
    async def delete_deployment(
        name: str,
        request: Request,
        reason: str | None = Query(None, description="Why, for the audit log."),
        principal: Principal = DEPLOYER,
    ) -> dict[str, Any]:
        gateway = gateway_of(request)
        deployment = gateway.table.get(name)
        if name in {d.name for d in gateway.config.deployments}:
            raise Conflict(
                f"deployment {name!r} is defined in the gateway's config file; remove it there",
                code="defined_in_config",
            )
        users = [d.name for d in gateway.table.all() if name in d.config.fallbacks]
        if users:
            raise Conflict(f"deployment {name!r} is a fallback of {users}; change those first", code="in_use")
        gateway.table.remove(name)
        await asyncio.to_thread(_delete_row, gateway, name, actor(principal), reason)
        return {"deleted": deployment.name}


def _arm_routes(router: APIRouter) -> None:
    @router.put(
        "/api/deployments/{name}/arms/{arm}",
        tags=["admin"],
        summary="Add an arm (weight 0 unless given) or change its model reference or weight.",
        responses={200: {"description": "Updated."}, 201: {"description": "Created."}, **ERRORS},
    )
    async def put_arm(
        name: str, arm: str, body: ArmPut, request: Request, principal: Principal = DEPLOYER
    ) -> Any:
        gateway = gateway_of(request)
        deployment = gateway.table.get(name)
        version = await asyncio.to_thread(resolve_version, registry_resolver(gateway.home), body.model)
        existing = next((a for a in deployment.arms if a.name == arm), None)
        upstream_model = body.upstream_model or (existing.upstream_model if existing else name)
        new_weight = body.weight if body.weight is not None else (existing.weight if existing else 0.0)
        others = sum(a.weight for a in deployment.arms if a is not existing)
        if others + new_weight <= 0:  # checked before anything changes: a refused change leaves no trace
            raise Conflict(
                f"the weights of {name!r}'s arms would add up to 0; give this arm a weight above 0 "
                "or move the split first",
                param="weight",
                code="no_weighted_arm",
            )
        if existing is None:
            weight = body.weight or 0.0
            deployment.arms.append(Arm(arm, body.model, version, weight, upstream_model, []))
        else:
            existing.model_ref, existing.model_version = body.model, version
            existing.upstream_model = upstream_model
            if body.weight is not None:
                existing.weight = body.weight
        await asyncio.to_thread(
            persist, gateway, deployment, "all", actor(principal), "gateway.arm.put", body.reason
        )
        return JSONResponse(deployment_view(deployment), status_code=201 if existing is None else 200)

    @router.delete(
        "/api/deployments/{name}/arms/{arm}",
        tags=["admin"],
        summary="Remove an arm and its replicas from the deployment.",
        responses={200: {"description": "Removed."}, **ERRORS},
    )
    async def delete_arm(
        name: str,
        arm: str,
        request: Request,
        reason: str | None = Query(None, description="Why, for the audit log."),
        principal: Principal = DEPLOYER,
    ) -> dict[str, Any]:
        gateway = gateway_of(request)
        deployment = gateway.table.get(name)
        target = deployment.arm(arm)
        kept = [a for a in deployment.arms if a is not target]
        if sum(a.weight for a in kept) <= 0:
            raise Conflict(
                f"removing arm {arm!r} would leave {name!r} no traffic to serve; move the split first",
                code="last_weighted_arm",
            )
        deployment.arms = kept
        await asyncio.to_thread(
            persist, gateway, deployment, "all", actor(principal), "gateway.arm.delete", reason
        )
        return deployment_view(deployment)


def install_deployment_routes(router: APIRouter) -> None:
    _deployment_routes(router)
    _arm_routes(router)
