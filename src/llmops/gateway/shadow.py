"""Shadow traffic: a sample of requests is mirrored to a candidate arm; its answers are only logged.

The mirror runs as a background task after the primary request was admitted; it never delays,
changes or fails the client's answer, and its log row points at the primary's with ``shadow_of``,
so both answers can be compared. Shadow requests are not charged to the key. Its row goes through
the log writer's protection like every other row (payloads dropped, redacted, encrypted as the
request log is configured).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import replace

from llmops.errors import LLMOpsError
from llmops.gateway.deployments import Arm
from llmops.gateway.forward import Forwarder
from llmops.gateway.metrics import GatewayMetrics
from llmops.gateway.outcome import RequestContext, json_or_empty, usage_of
from llmops.gateway.pricing import engine_seconds, request_cost
from llmops.gateway.request_log import RequestLogRecord, RequestLogWriter
from llmops.gateway.sse import completion_of
from llmops.store.schema import utcnow


class ShadowMirror:
    def __init__(
        self,
        forwarder: Forwarder,
        log_writer: RequestLogWriter | None,
        metrics: GatewayMetrics,
        rng: random.Random,
    ) -> None:
        self.forwarder = forwarder
        self.log_writer = log_writer
        self.metrics = metrics
        self.rng = rng
        self._tasks: set[asyncio.Task[None]] = set()

    def maybe_mirror(self, ctx: RequestContext) -> None:
        shadow = ctx.deployment.config.shadow
        arm = ctx.deployment.shadow
        if shadow is None or arm is None or self.rng.random() >= shadow.sample_rate:
            return
        # a copy made now: the primary's context changes as it goes (a fallback may take it over)
        shadow_ctx = replace(ctx, request_id=f"{ctx.request_id}.shadow", ts=utcnow(), finished=False)
        # the version is decided now, as for a primary request: an alias moving while it runs changes nothing
        version = arm.model_version
        task = asyncio.create_task(self._mirror(shadow_ctx, arm, version), name=f"shadow-{ctx.request_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _mirror(self, ctx: RequestContext, arm: Arm, version: str) -> None:
        status, error, payload, replica, seconds = 502, None, {}, None, 0.0
        try:
            async with asyncio.timeout(ctx.deployment.config.timeouts.total_s):
                attempt = await self.forwarder.open_arm(
                    ctx.deployment, arm, ctx.parsed, ctx.request_id, [], stream=False
                )
                replica, version = attempt.replica.name, attempt.replica.model_version or version
                try:
                    body = await attempt.rest()
                finally:
                    await self.forwarder.release(attempt, ok=True)
            status, payload = attempt.response.status, json_or_empty(body)
            seconds = engine_seconds(attempt.response.headers, ctx.elapsed())
        except (LLMOpsError, TimeoutError, Exception) as exc:
            error = f"shadow arm {arm.name!r} failed: {exc}"
        self.metrics.shadow.labels(outcome="ok" if status == 200 else "error").inc()
        await self._log(ctx, arm, version, status, payload, replica, seconds, error)

    async def _log(
        self,
        ctx: RequestContext,
        arm: Arm,
        version: str,
        status: int,
        payload: dict[str, object],
        replica: str | None,
        seconds: float,
        error: str | None,
    ) -> None:
        if self.log_writer is None:
            return
        prompt, completion = usage_of(payload)
        price = ctx.deployment.config.price
        await self.log_writer.submit(
            RequestLogRecord(
                id=ctx.request_id,
                ts=ctx.ts,
                endpoint=ctx.parsed.endpoint,
                key_id=ctx.principal.key_id,
                user=ctx.parsed.user,
                deployment=ctx.deployment.name,
                model_version=version,
                arm=arm.name,
                replica=replica,
                shadow_of=ctx.request_id.removesuffix(".shadow"),
                stream=False,
                prompt=ctx.parsed.prompt_text,
                completion=completion_of(payload) if status == 200 else None,
                prompt_tokens=prompt or 0,
                completion_tokens=completion or 0,
                latency_ms=ctx.elapsed() * 1000,
                status=status,
                cost_usd=request_cost(price, prompt or 0, completion or 0, seconds) if status == 200 else 0.0,
                error=error,
            )
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
