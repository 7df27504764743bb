"""The gateway's admin API as a deploy target uses it: define a deployment, add arms, (de)register
replicas. Every failure names the address tried; an unreachable gateway is an ``UpstreamError``."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import httpx

from llmops.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    LLMOpsError,
    NotFound,
    Unauthorized,
    UpstreamError,
)
from llmops.gateway.config import DeploymentConfig

if TYPE_CHECKING:
    from llmops.deploy.spec import DeploymentSpec

_BY_STATUS: dict[int, type[LLMOpsError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
}


class GatewayAdmin:
    """A small synchronous client of ``/api/deployments`` (deployer role)."""

    def __init__(self, url: str, key: str | None, *, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"the gateway at {self.url} is unreachable ({type(exc).__name__}: {exc}); start it "
                "(`llmops serve`) or pass --gateway with its address",
                code="gateway_unreachable",
            ) from None
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:300]
            error = _BY_STATUS.get(response.status_code, UpstreamError)
            raise error(f"gateway {self.url} refused {method} {path}: {message}", code="gateway_refused")
        return response.json()

    def check(self) -> None:
        """Reachable, and the key may define deployments (a read needs developer, the writes deployer)."""
        self._call("GET", "/api/deployments")

    def deployments(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/api/deployments")
        return result

    def put_deployment(self, config: DeploymentConfig, reason: str | None = None) -> dict[str, Any]:
        body = {"deployment": config.model_dump(mode="json", exclude_none=True), "reason": reason}
        result: dict[str, Any] = self._call("PUT", f"/api/deployments/{config.name}", json=body)
        return result

    def delete_deployment(self, name: str, reason: str | None = None) -> None:
        self._call("DELETE", f"/api/deployments/{name}", params={"reason": reason} if reason else None)

    def put_arm(
        self,
        name: str,
        arm: str,
        model: str,
        *,
        weight: float | None = None,
        upstream_model: str | None = None,
    ) -> dict[str, Any]:
        body = {"model": model, "weight": weight, "upstream_model": upstream_model}
        result: dict[str, Any] = self._call("PUT", f"/api/deployments/{name}/arms/{arm}", json=body)
        return result

    def delete_arm(self, name: str, arm: str) -> None:
        self._call("DELETE", f"/api/deployments/{name}/arms/{arm}")

    def add_replica(self, name: str, arm: str, url: str, replica: str, model_version: str) -> None:
        body = {"url": url, "name": replica, "model_version": model_version}
        self._call("POST", f"/api/deployments/{name}/arms/{arm}/replicas", json=body)

    def remove_replica(self, name: str, arm: str, replica: str) -> None:
        """Deregister; a replica (or arm) the gateway no longer has counts as removed."""
        with contextlib.suppress(NotFound):
            self._call("DELETE", f"/api/deployments/{name}/arms/{arm}/replicas", params={"replica": replica})


def ensure_arm(gateway: GatewayAdmin, spec: DeploymentSpec, track: str, model: str) -> None:
    """Make the gateway front ``spec``'s deployment with an arm for ``track`` serving ``model``: the
    stable track (re)defines the deployment; another track is added at weight 0 (its weight kept when
    the arm exists), which needs the stable track applied first."""
    if track == "stable":
        gateway.put_deployment(spec.gateway_deployment(), reason=f"deploy apply {spec.name}")
        return
    existing = [d for d in gateway.deployments() if d["name"] == spec.name]
    if not existing:
        raise Conflict(f"deployment {spec.name!r} has no stable track yet; apply it first")
    arms = {a["name"] for a in existing[0]["arms"]}
    gateway.put_arm(
        spec.name, track, model, upstream_model=spec.served_model, weight=None if track in arms else 0
    )
