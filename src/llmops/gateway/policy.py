"""Route policies: every route is public by name or declares the role it needs.

A route declares its role with ``Depends(RequireRole(Role.X))``; ``unguarded_routes`` lists routes
that do neither, and the app refuses to build while any exists, so a route added without a
policy cannot be served (and a test fails).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from llmops.gateway.auth import Principal, presented_key
from llmops.security.roles import Role

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})


class RequireRole:
    """A FastAPI dependency: authenticate the request and require at least ``role``."""

    def __init__(self, role: Role) -> None:
        self.role = role

    async def __call__(self, request: Request) -> Principal:
        cached = getattr(request.state, "principal", None)
        if isinstance(cached, Principal):
            principal = cached
        else:
            gateway = request.app.state.gateway
            principal = await gateway.key_cache.authenticate(presented_key(request.headers))
            request.state.principal = principal
        principal.require(self.role)
        return principal


def route_policy(route: BaseRoute) -> Role | str | None:
    """``"public"``, the role a route requires, or None when it has no policy.

    Only plain routes can be checked: mounted apps and included routers count as unguarded, so
    every route is registered on the app itself.
    """
    path = getattr(route, "path", None)
    if path in PUBLIC_PATHS:
        return "public"
    if isinstance(route, APIRoute):
        for dependency in route.dependant.dependencies:
            if isinstance(dependency.call, RequireRole):
                return dependency.call.role
    return None


def unguarded_routes(app: FastAPI) -> list[str]:
    return [getattr(r, "path", repr(r)) for r in app.routes if route_policy(r) is None]
