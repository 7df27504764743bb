"""The deployments a gateway serves, at run time: arms with their replicas, shadow, fallbacks.

Built from ``DeploymentConfig``s; an arm's registry reference (``support-bot@production``) is
resolved to the version it names (``support-bot@3``) when the table is built, and that version is
recorded with every request. References the registry does not know are kept as written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from llmops.errors import LLMOpsError, NotFound
from llmops.gateway.config import ArmConfig, DeploymentConfig, GatewayConfig
from llmops.gateway.routing import Replica
from llmops.gateway.upstream_aiohttp import AiohttpUpstream
from llmops.gateway.upstream_h1 import H1Upstream
from llmops.gateway.upstream_urls import check_upstream_url
from llmops.gateway.upstreams import HttpUpstream, Upstream

log = logging.getLogger(__name__)

VersionResolver = Callable[[str], str]
UpstreamFactory = Callable[[str, str | None], Upstream]
HTTP_CLIENTS: dict[str, Callable[[str, str | None], Upstream]] = {
    "h1": H1Upstream,
    "aiohttp": AiohttpUpstream,
    "httpx": HttpUpstream,
}


@dataclass(eq=False)
class Arm:
    name: str
    model_ref: str
    model_version: str
    weight: float
    upstream_model: str
    replicas: list[Replica] = field(default_factory=list)


@dataclass(eq=False)
class Deployment:
    config: DeploymentConfig
    arms: list[Arm]
    shadow: Arm | None = None
    # settings written through the admin API (``PUT /api/deployments/NAME``) rather than the config file
    from_store: bool = False

    @property
    def name(self) -> str:
        return self.config.name

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise NotFound(
            f"deployment {self.name!r} has no arm {name!r}; arms: {', '.join(a.name for a in self.arms)}",
            param="arm",
        )

    def replicas(self) -> list[Replica]:
        shadow = self.shadow.replicas if self.shadow else []
        return [r for arm in self.arms for r in arm.replicas] + shadow


def http_upstream_factory(config: GatewayConfig) -> UpstreamFactory:
    """Builds HTTP replicas from URLs, validated against the config's loopback/private policy."""

    def build(url: str, name: str | None) -> Upstream:
        checked = check_upstream_url(
            url,
            allow_loopback=config.allow_loopback_upstreams,
            allow_private=config.allow_private_upstreams,
        )
        return HTTP_CLIENTS[config.upstream_client](checked, name)

    return build


def resolve_version(resolver: VersionResolver | None, ref: str, *, quiet: bool = False) -> str:
    """The version ``ref`` names now (``support-bot@3``); ``ref`` as written when the registry lacks it."""
    if resolver is None:
        return ref
    try:
        return resolver(ref)
    except LLMOpsError as exc:
        if not quiet:
            log.warning(
                "deployment model %s is not in the registry (%s); recording it as written", ref, exc.message
            )
        return ref


def build_arm(
    deployment: DeploymentConfig,
    arm: ArmConfig,
    make_upstream: UpstreamFactory,
    resolver: VersionResolver | None,
    extra: Iterable[Upstream] = (),
) -> Arm:
    ref = arm.model or f"{deployment.name}@production"
    replicas = [Replica(make_upstream(u.url, u.name)) for u in arm.upstreams]
    replicas += [Replica(upstream) for upstream in extra]
    return Arm(
        name=arm.name,
        model_ref=ref,
        model_version=resolve_version(resolver, ref),
        weight=arm.weight,
        upstream_model=arm.upstream_model or deployment.name,
        replicas=replicas,
    )


class DeploymentTable:
    """Name → deployment; what a key may call."""

    def __init__(self, deployments: Iterable[Deployment] = ()) -> None:
        self._by_name = {d.name: d for d in deployments}

    @classmethod
    def build(
        cls,
        config: GatewayConfig,
        make_upstream: UpstreamFactory,
        resolver: VersionResolver | None = None,
        in_process: dict[str, list[Upstream]] | None = None,
    ) -> DeploymentTable:
        """``in_process`` adds caller-made upstreams to arms, keyed ``deployment`` or ``deployment/arm``."""
        extra = in_process or {}
        table = cls()
        for spec in config.deployments:
            arms = []
            for index, arm in enumerate(spec.arms):
                added = extra.get(f"{spec.name}/{arm.name}", []) + (
                    extra.get(spec.name, []) if index == 0 else []
                )
                arms.append(build_arm(spec, arm, make_upstream, resolver, added))
            shadow = None
            if spec.shadow is not None:
                added = extra.get(f"{spec.name}/{spec.shadow.arm.name}", [])
                shadow = build_arm(spec, spec.shadow.arm, make_upstream, resolver, added)
            table.add(Deployment(spec, arms, shadow))
        return table

    def add(self, deployment: Deployment) -> None:
        self._by_name[deployment.name] = deployment

    def remove(self, name: str) -> None:
        self._by_name.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def all(self) -> list[Deployment]:
        return [self._by_name[name] for name in self.names()]

    def get(self, name: str) -> Deployment:
        if name not in self._by_name:
            raise NotFound(f"no deployment {name!r}", param="model")
        return self._by_name[name]

    def find(self, name: str, allowed: Callable[[str], bool]) -> Deployment:
        """The deployment a key asked for; 404 listing the ones it may use otherwise."""
        if name in self._by_name and allowed(name):
            return self._by_name[name]
        usable = [n for n in self.names() if allowed(n)]
        listing = ", ".join(usable) if usable else "none (ask an admin to widen the key)"
        raise NotFound(
            f"model {name!r} does not exist or this key may not use it; models this key may use: {listing}",
            param="model",
            code="model_not_found",
        )
