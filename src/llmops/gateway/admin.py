"""The admin API under ``/api/``: keys (admin), deployments, replicas and traffic splits (deployer),
and reads of the state (developer). The request log's routes are in ``request_routes``, monitoring's
in ``monitor_routes``.

Changes take effect in this worker at once and are persisted with an audit event in one
transaction (``gateway_deployments`` for deployments); other workers apply deployment changes
within ``admin_sync_s`` (``overrides.py``) and key changes within their key-cache TTL.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import JsonDict

from llmops.errors import Conflict, InvalidInput, NotFound
from llmops.gateway.auth import Principal
from llmops.gateway.deployments import Deployment, http_upstream_factory
from llmops.gateway.overrides import deployment_spec
from llmops.gateway.policy import RequireRole
from llmops.gateway.routing import Replica
from llmops.gateway.service import Gateway
from llmops.gateway.upstream_urls import UPSTREAM_URL_PATTERN
from llmops.openapi_contract import error_responses, integral
from llmops.security.keys import KEY_NAME_PATTERN, KeySpec
from llmops.security.roles import Role, parse_role
from llmops.store import audit
from llmops.store.schema import GatewayDeployment, utcnow

ADMIN = Depends(RequireRole(Role.ADMIN))
DEPLOYER = Depends(RequireRole(Role.DEPLOYER))
DEVELOPER = Depends(RequireRole(Role.DEVELOPER))


RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII)
RoleName = Literal["consumer", "developer", "deployer", "admin"]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(
        min_length=1,
        max_length=200,
        pattern=KEY_NAME_PATTERN,
        description="Who or what the key is for (1-200 characters, at least one visible).",
    )
    role: RoleName = Field("consumer", description="consumer, developer, deployer or admin.")
    models: list[str] = Field(default_factory=list, description="Deployments it may call (empty: all).")
    rpm: int | None = Field(
        None, ge=0, le=2**31 - 1, strict=True, description="Requests per minute (unset: unlimited)."
    )
    tpm: int | None = Field(
        None, ge=0, le=2**53 - 1, strict=True, description="Tokens per minute (unset: unlimited)."
    )
    budget_usd: float | None = Field(None, ge=0, strict=True, allow_inf_nan=False)
    expires_at: datetime | None = Field(
        None, description="RFC 3339 date-time (2030-01-31T00:00:00Z); unset: never expires."
    )
    reason: str | None = None

    @field_validator("rpm", "tpm", mode="before")
    @classmethod
    def _integral_limits(cls, value: Any) -> Any:
        return integral(value)

    @field_validator("expires_at", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        if value is not None and not (isinstance(value, str) and RFC3339.match(value)):
            raise ValueError("expires_at must be an RFC 3339 date-time like 2030-01-31T00:00:00Z")
        return value


Weight = Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]
# what the split route checks against the body alone: some weight above 0
_SOME_WEIGHT: JsonDict = {"minProperties": 1, "not": {"additionalProperties": {"maximum": 0}}}


class SplitUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weights: dict[str, Weight] = Field(
        description="Arm name → relative weight, for every arm of the deployment; some above 0.",
        json_schema_extra=_SOME_WEIGHT,
    )
    reason: str | None = None


class ReplicaAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(
        pattern=UPSTREAM_URL_PATTERN,
        description="Base URL of the replica, http(s) without credentials; its host must resolve to "
        "addresses the gateway's config allows (public, or loopback/private when enabled).",
    )
    name: str | None = None
    model_version: str | None = Field(
        None, description="The version the replica serves (recorded per request); default its arm's."
    )
    reason: str | None = None


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def deployment_view(deployment: Deployment) -> dict[str, Any]:
    def replicas(rs: list[Replica]) -> list[dict[str, Any]]:
        return [
            {
                "name": r.name,
                "outstanding": r.outstanding,
                "available": r.available(),
                "last_error": r.last_error,
            }
            for r in rs
        ]

    arms = [
        {"name": a.name, "model": a.model_version, "weight": a.weight, "replicas": replicas(a.replicas)}
        for a in deployment.arms
    ]
    shadow = deployment.shadow
    return {
        "name": deployment.name,
        "arms": arms,
        "shadow": {"name": shadow.name, "model": shadow.model_version, "replicas": replicas(shadow.replicas)}
        if shadow
        else None,
        "fallbacks": deployment.config.fallbacks,
    }


def deployments_without_replicas(gateway: Gateway) -> list[str]:
    return [d.name for d in gateway.table.all() if not any(r.available() for r in d.replicas())]


def _persist(
    gateway: Gateway, deployment: Deployment, part: str, actor: str, action: str, reason: str | None
) -> None:
    """Store the changed ``part`` (``weights``, ``replicas`` or ``all``) of a deployment, keeping the rest."""
    now = utcnow()
    with gateway.home.store.transaction() as session:
        row = session.get(GatewayDeployment, deployment.name, with_for_update=True)
        before = dict(row.spec) if row else None
        spec = {**(before or {}), **deployment_spec(deployment, part)}
        if row is None:
            session.add(GatewayDeployment(name=deployment.name, spec=spec, updated_by=actor, updated_at=now))
        else:
            row.spec, row.updated_by, row.updated_at = spec, actor, now
        audit.append(
            session,
            actor=actor,
            action=action,
            target=f"deployment:{deployment.name}",
            reason=reason,
            before=before,
            after=spec,
        )
    gateway.overrides.mark_seen(deployment.name, now)


def _key_routes(router: APIRouter) -> None:
    @router.get("/api/keys", tags=["admin"], summary="List API keys (never the keys themselves).")
    async def list_keys(request: Request, principal: Principal = ADMIN) -> list[dict[str, Any]]:
        records = await asyncio.to_thread(_gateway(request).keys.list)
        return [r.to_json() for r in records]

    @router.post(
        "/api/keys",
        status_code=201,
        tags=["admin"],
        summary="Create a key; the response holds the key, shown once.",
    )
    async def create_key(body: KeyCreate, request: Request, principal: Principal = ADMIN) -> dict[str, Any]:
        spec = KeySpec(
            name=body.name,
            role=parse_role(body.role),
            models=tuple(body.models),
            rpm=body.rpm,
            tpm=body.tpm,
            budget_usd=body.budget_usd,
            expires_at=body.expires_at,
        )
        actor = f"key:{principal.key_id}"
        created = await asyncio.to_thread(_gateway(request).keys.create, spec, body.reason, actor=actor)
        return {**created.record.to_json(), "key": created.key}

    @router.post(
        "/api/keys/{key_id}/revoke",
        tags=["admin"],
        summary="Revoke a key (every worker within its key-cache TTL).",
    )
    async def revoke_key(key_id: str, request: Request, principal: Principal = ADMIN) -> dict[str, Any]:
        gateway = _gateway(request)
        record = await asyncio.to_thread(
            gateway.keys.revoke, key_id, "via the admin API", actor=f"key:{principal.key_id}"
        )
        gateway.key_cache.forget_all()
        return record.to_json()


def _deployment_routes(router: APIRouter) -> None:
    @router.get(
        "/api/deployments", tags=["admin"], summary="Deployments with arms, weights and replica state."
    )
    async def list_deployments(request: Request, principal: Principal = DEVELOPER) -> list[dict[str, Any]]:
        return [deployment_view(d) for d in _gateway(request).table.all()]

    @router.get(
        "/api/readiness",
        tags=["admin"],
        summary="Readiness with the deployments that have no available replica (/readyz gives the status).",
    )
    async def readiness(request: Request, principal: Principal = DEVELOPER) -> dict[str, Any]:
        missing = deployments_without_replicas(_gateway(request))
        return {"ready": not missing, "deployments_without_replicas": missing}

    @router.put(
        "/api/deployments/{name}/split",
        tags=["admin"],
        summary="Set the traffic split between a deployment's arms.",
        responses=error_responses(409),
    )
    async def set_split(
        name: str, body: SplitUpdate, request: Request, principal: Principal = DEPLOYER
    ) -> dict[str, Any]:
        gateway = _gateway(request)
        deployment = gateway.table.get(name)
        arms = ", ".join(a.name for a in deployment.arms)
        if set(body.weights) != {a.name for a in deployment.arms}:
            raise Conflict(
                f"give a weight for each arm of {name!r} ({arms}), and no other",
                param="weights",
                code="arms_differ",
            )
        if sum(body.weights.values()) <= 0:
            raise InvalidInput(f"the weights of {arms} must add up to more than 0", param="weights")
        for arm in deployment.arms:
            arm.weight = body.weights[arm.name]
        await asyncio.to_thread(
            _persist,
            gateway,
            deployment,
            "weights",
            f"key:{principal.key_id}",
            "gateway.split.set",
            body.reason,
        )
        return deployment_view(deployment)


def _replica_routes(router: APIRouter) -> None:
    @router.post(
        "/api/deployments/{name}/arms/{arm}/replicas",
        status_code=201,
        tags=["admin"],
        summary="Add a replica to an arm.",
    )
    async def add_replica(
        name: str, arm: str, body: ReplicaAdd, request: Request, principal: Principal = DEPLOYER
    ) -> dict[str, Any]:
        gateway = _gateway(request)
        deployment = gateway.table.get(name)
        # validation resolves the host name: off the event loop
        upstream = await asyncio.to_thread(http_upstream_factory(gateway.config), body.url, body.name)
        target = deployment.arm(arm)
        # idempotent by name: a supervisor re-registering a replica replaces its entry, never twins it
        target.replicas = [r for r in target.replicas if r.name != upstream.name]
        target.replicas.append(Replica(upstream, model_version=body.model_version))
        await asyncio.to_thread(
            _persist,
            gateway,
            deployment,
            "replicas",
            f"key:{principal.key_id}",
            "gateway.replica.add",
            body.reason,
        )
        return deployment_view(deployment)

    @router.delete(
        "/api/deployments/{name}/arms/{arm}/replicas", tags=["admin"], summary="Remove a replica from an arm."
    )
    async def remove_replica(
        name: str,
        arm: str,
        request: Request,
        replica: str = Query(description="The replica's name."),
        principal: Principal = DEPLOYER,
    ) -> dict[str, Any]:
        gateway = _gateway(request)
        deployment = gateway.table.get(name)
        target = deployment.arm(arm)
        kept = [r for r in target.replicas if r.name != replica]
        if len(kept) == len(target.replicas):
            raise NotFound(f"arm {arm!r} of {name!r} has no replica {replica!r}", param="replica")
        target.replicas = kept
        await asyncio.to_thread(
            _persist,
            gateway,
            deployment,
            "replicas",
            f"key:{principal.key_id}",
            "gateway.replica.remove",
            None,
        )
        return deployment_view(deployment)


def install_admin_routes(router: APIRouter) -> None:
    """Add the admin routes (under /api/) to ``router`` (the app's own: policies are checked per route)."""
    _key_routes(router)
    _deployment_routes(router)
    _replica_routes(router)
