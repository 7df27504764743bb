"""Sending a request to a replica of one deployment: pick one, retry on another before the first byte.

Contract: ``Forwarder.open`` returns an ``Attempt`` whose response has started and whose first body
chunk has arrived (so nothing has reached the client yet when a replica fails and another one is
tried). Retryable: connection failures, timeouts before the first byte, and 429/502/503/504
answers. Connection failures and 502/504 count towards the replica's circuit breaker. When every
replica of the deployment failed, ``NotServed`` carries what each one did (for operators only);
the pipeline then tries the deployment's fallbacks under their own policy. The caller must
``release`` the attempt once the response is finished.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from llmops.errors import LLMOpsError, Overloaded, UpstreamError
from llmops.gateway.config import HealthConfig
from llmops.gateway.deployments import Arm, Deployment, DeploymentTable
from llmops.gateway.metrics import GatewayMetrics
from llmops.gateway.openai_request import PATHS, ParsedRequest, upstream_body
from llmops.gateway.routing import Replica, choose_arm, pick_replica
from llmops.gateway.upstreams import (
    UpstreamDisconnected,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamUnavailable,
)

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
BREAKER_STATUS = frozenset({502, 504})


@dataclass
class Attempt:
    """A started response from one replica."""

    deployment: Deployment
    arm: Arm
    replica: Replica
    response: UpstreamResponse
    first: bytes
    started: float
    first_at: float
    # decided when the attempt starts: an alias move while the answer streams does not relabel it
    model_version: str = ""
    released: bool = field(default=False)

    async def rest(self) -> bytes:
        return self.first + await self.response.read()

    async def rest_within(self, timeout_s: float) -> bytes:
        """``rest``, or ``TimeoutError`` past ``timeout_s``; no deadline is armed for an answer that
        has arrived whole (reading it cannot wait)."""
        arrived = self.response.arrived
        if arrived is not None and arrived():
            return await self.rest()
        async with asyncio.timeout(timeout_s):
            return await self.rest()


class _Failed(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotServed(Exception):
    """No replica of a deployment could take the request. ``detail`` names replicas and their
    errors (operators only); ``overloaded``: every failure was a 429/503 or no replica was healthy."""

    def __init__(
        self,
        deployment: str,
        detail: str,
        *,
        overloaded: bool,
        arm: str | None = None,
        model_version: str | None = None,
    ) -> None:
        super().__init__(f"deployment {deployment!r} could not be served: {detail}")
        self.deployment = deployment
        self.detail = str(self)
        self.overloaded = overloaded
        self.arm = arm  # the arm chosen, and its version when chosen (the request counts against it)
        self.model_version = model_version


class Forwarder:
    def __init__(
        self, table: DeploymentTable, health: HealthConfig, metrics: GatewayMetrics, rng: random.Random
    ) -> None:
        self.table = table
        self.health = health
        self.metrics = metrics
        self.rng = rng

    def choose(self, deployment: Deployment, parsed: ParsedRequest) -> Arm:
        index = choose_arm(
            [a.weight for a in deployment.arms], parsed.user, salt=deployment.name, rng=self.rng
        )
        return deployment.arms[index]

    async def open(self, deployment: Deployment, parsed: ParsedRequest, request_id: str) -> Attempt:
        """A started answer of one of ``deployment``'s replicas, or ``NotServed``."""
        errors: list[str] = []
        arm = self.choose(deployment, parsed)
        version = arm.model_version  # decided now: an alias move while it fails does not change it
        try:
            return await self.open_arm(deployment, arm, parsed, request_id, errors)
        except _Failed as exc:
            overloaded = not errors or exc.status in (429, 503)
        detail = "; ".join(errors) if errors else "no replica is healthy (all are ejected or failing checks)"
        raise NotServed(deployment.name, detail, overloaded=overloaded, arm=arm.name, model_version=version)

    async def open_arm(
        self,
        deployment: Deployment,
        arm: Arm,
        parsed: ParsedRequest,
        request_id: str,
        errors: list[str],
        *,
        stream: bool | None = None,
    ) -> Attempt:
        body = upstream_body(parsed, arm.upstream_model, stream=stream)
        request = UpstreamRequest(PATHS[parsed.endpoint], body, request_id)
        affinity = parsed.prompt_text[: deployment.config.affinity_prefix_chars]
        tried: list[Replica] = []
        status: int | None = None
        for _ in range(deployment.config.max_retries + 1):
            replica = pick_replica(
                arm.replicas,
                exclude=tried,
                affinity_key=affinity if deployment.config.prefix_affinity else None,
                rng=self.rng,
            )
            if replica is None:
                break
            tried.append(replica)
            try:
                return await self._try(deployment, arm, replica, request)
            except _Failed as exc:
                errors.append(f"{replica.name}: {exc}")
                status = exc.status
        raise _Failed(f"arm {arm.name!r} failed", status if tried else 503)

    async def _try(
        self, deployment: Deployment, arm: Arm, replica: Replica, request: UpstreamRequest
    ) -> Attempt:
        version = replica.model_version or arm.model_version  # before the first await
        timeouts = deployment.config.timeouts
        replica.outstanding += 1
        started = time.monotonic()
        response: UpstreamResponse | None = None
        try:
            async with asyncio.timeout(timeouts.connect_s + timeouts.first_token_s):
                response = await replica.upstream.open(request, timeouts)
                if response.status in RETRYABLE_STATUS:
                    detail = (await response.read())[:300].decode("utf-8", "replace")
                    raise _Failed(f"answered {response.status} {detail}".strip(), response.status)
                first = await anext(response.body, b"")
        except (_Failed, UpstreamUnavailable, UpstreamDisconnected, TimeoutError) as exc:
            await self._failed(replica, response, exc)
            if isinstance(exc, _Failed):
                raise
            text = str(exc) or f"no first byte within {timeouts.connect_s + timeouts.first_token_s:g}s"
            raise _Failed(text, 502) from exc
        except BaseException:
            replica.outstanding -= 1
            if response is not None:
                await response.aclose()
            raise
        return Attempt(deployment, arm, replica, response, first, started, time.monotonic(), version)

    async def _failed(self, replica: Replica, response: UpstreamResponse | None, exc: BaseException) -> None:
        replica.outstanding -= 1
        if response is not None:
            await response.aclose()
        status = exc.status if isinstance(exc, _Failed) else None
        if status is None or status in BREAKER_STATUS:
            replica.record_failure(str(exc), self.health.failure_threshold, self.health.cooldown_s)
        self.metrics.child("upstream_failures", replica.name).inc()

    async def release(self, attempt: Attempt, *, ok: bool) -> None:
        if attempt.released:
            return
        attempt.released = True
        attempt.replica.outstanding -= 1
        if ok:
            attempt.replica.record_success()
        else:
            attempt.replica.record_failure(
                "broke off a response", self.health.failure_threshold, self.health.cooldown_s
            )
        await attempt.response.aclose()


def not_served_error(request_id: str, failure: NotServed) -> LLMOpsError:
    """What the client is told when nothing could serve: no addresses, no upstream text."""
    message = (
        f"deployment {failure.deployment!r} could not be served now; retry later, or report "
        f"request {request_id} to the operator"
    )
    error: LLMOpsError
    if failure.overloaded:
        error = Overloaded(message, retry_after=1, code="no_healthy_replica")
    else:
        error = UpstreamError(message, code="upstream_unavailable")
    error.detail = failure.detail
    return error


def upstream_failed(request_id: str, deployment: str, detail: str, code: str) -> UpstreamError:
    error = UpstreamError(
        f"deployment {deployment!r} failed to answer; retry, or report request {request_id} to the operator",
        code=code,
    )
    error.detail = detail
    return error
