"""One completion request through the gateway: admit, (cache), reserve, forward, settle, log.

Order and why: the deployment is resolved first (404 lists what the key may use); rate limits
count the request (tokens as an estimate); the deployment's input guardrails check the prompt (a
blocked one never reaches a replica); a cache hit is answered at no cost; the budget reserves
the worst-case cost; the request goes to a replica (retries and fallbacks in ``forward``); then
``finish`` settles the budget at the actual cost, corrects the token count, records metrics,
writes the log row (relaxed: queued; strict: committed before the response completes) and feeds an
answered request to the monitor (drift, online evaluation, feedback). ``finish`` runs exactly once
for every admitted request, whatever happens. Output guardrails check a whole answer before it is
returned and a streamed one at its end (flag only); flags and blocks go to the row's ``error`` and to
``llmops_gateway_guardrail_total``. Logged payloads are redacted (``request_log.redact``) and
encrypted (``LLMOPS_PAYLOAD_KEYS``) before the row is queued.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import Counter
from starlette.responses import Response

from llmops.errors import InvalidInput, LLMOpsError, UpstreamError
from llmops.gateway.auth import Principal
from llmops.gateway.budgets import BudgetLedger
from llmops.gateway.cache import ResponseCache, cache_key, is_deterministic
from llmops.gateway.config import DeploymentGuardrails, GatewayConfig
from llmops.gateway.deployments import DeploymentTable
from llmops.gateway.forward import Attempt, Forwarder
from llmops.gateway.limits import LimitRule, RateLimiter
from llmops.gateway.metrics import GatewayMetrics
from llmops.gateway.monitoring import GatewayMonitor
from llmops.gateway.openai_request import Endpoint, parse_request
from llmops.gateway.outcome import Outcome, RequestContext, json_or_empty, usage_of
from llmops.gateway.pricing import engine_seconds, request_cost, worst_case_cost
from llmops.gateway.relay import RelayResponse
from llmops.gateway.request_log import RequestLogRecord, RequestLogWriter
from llmops.gateway.shadow import ShadowMirror
from llmops.gateway.sse import completion_of
from llmops.gateway.upstreams import UpstreamDisconnected
from llmops.security.guardrails import GuardrailReport, check_input, check_output
from llmops.security.payload_crypto import PayloadCipher
from llmops.security.redaction import Redactor
from llmops.store.schema import utcnow

log = logging.getLogger(__name__)
_GUARDRAIL_COUNTERS: weakref.WeakKeyDictionary[GatewayMetrics, Counter] = weakref.WeakKeyDictionary()


def guardrail_counter(metrics: GatewayMetrics) -> Counter:
    """``llmops_gateway_guardrail_total{deployment,stage,rule,action}`` in the gateway's registry."""
    counter = _GUARDRAIL_COUNTERS.get(metrics)
    if counter is None:
        counter = Counter(
            "llmops_gateway_guardrail",
            "Guardrail decisions that blocked or flagged a request, by rule.",
            ["deployment", "stage", "rule", "action"],
            registry=metrics.registry,
        )
        _GUARDRAIL_COUNTERS[metrics] = counter
    return counter


class GuardrailBlocked(InvalidInput):
    """A guardrail refused the request's input or the model's output (400, ``guardrail_blocked``).

    ``detail`` (``guardrail block: STAGE RULE (why)``) is what the request log records, whatever the
    client is told (a deployment's refusal message), so a block is always recognisable in the log.
    """

    def __init__(self, message: str, *, detail: str, param: str | None = None, code: str | None = None):
        super().__init__(message, param=param, code=code)
        self.detail = detail


@dataclass
class Pipeline:
    config: GatewayConfig
    table: DeploymentTable
    limiter: RateLimiter
    budgets: BudgetLedger
    forwarder: Forwarder
    metrics: GatewayMetrics
    shadow: ShadowMirror
    cache: ResponseCache | None = None
    log_writer: RequestLogWriter | None = None
    monitor: GatewayMonitor | None = None
    cipher: PayloadCipher | None = None
    redactor: Redactor | None = None
    _flags: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.guardrail_decisions = guardrail_counter(self.metrics)
        if self.cipher is None:
            self.cipher = PayloadCipher.from_settings()
        if self.redactor is None and self.config.request_log.redact != "off":
            self.redactor = Redactor.from_settings()

    async def handle(self, request_id: str, principal: Principal, raw: bytes, endpoint: Endpoint) -> Response:
        try:
            parsed = parse_request(raw, endpoint)
            deployment = self.table.find(parsed.model, principal.key.may_use)
        except LLMOpsError as exc:
            self._log_refused(request_id, principal, endpoint, exc)
            raise
        ctx = RequestContext(request_id, principal, parsed, deployment)
        try:
            ctx.admission = await self.limiter.acquire(self._rules(ctx))
        except LLMOpsError as exc:
            await self.finish(ctx, Outcome(status=exc.status_code, error=exc.message))
            raise
        try:
            await self._guard_input(ctx)
            cached = await self._cached(ctx)
            if cached is not None:
                return cached
            await self._reserve(ctx)
            self.shadow.maybe_mirror(ctx)
            attempt = await self.forwarder.open(deployment, parsed, request_id)
        except BaseException as exc:
            status = exc.status_code if isinstance(exc, LLMOpsError) else 500
            error = getattr(exc, "detail", None) or getattr(exc, "message", type(exc).__name__)
            await self.finish(ctx, Outcome(status=status, error=error))
            raise
        if parsed.stream and attempt.response.status == 200:
            return RelayResponse(ctx, attempt, self.forwarder, self.finish)
        return await self._complete(ctx, attempt)

    # ---- guardrails ----
    async def _guard_input(self, ctx: RequestContext) -> None:
        guard = ctx.deployment.config.guardrails
        if guard is None or not guard.check_input:
            return
        report = await asyncio.to_thread(check_input, ctx.parsed.prompt_text, guard)
        blocked = self._record_guardrails(ctx, guard, report, "input")
        if blocked is not None:
            raise blocked

    async def _guard_output(
        self, ctx: RequestContext, outcome: Outcome, *, streamed: bool = False
    ) -> GuardrailBlocked | None:
        """Check an answer; the error to return when it is blocked (a streamed answer was already
        sent: its failing checks are recorded as flags)."""
        guard = ctx.deployment.config.guardrails
        if guard is None or not guard.check_output or outcome.status != 200 or outcome.completion is None:
            return None
        system = _system_prompt(ctx.parsed.body)
        report = await asyncio.to_thread(check_output, outcome.completion, guard, system_prompt=system)
        return self._record_guardrails(ctx, guard, report, "output", streamed=streamed)

    def _record_guardrails(
        self,
        ctx: RequestContext,
        guard: DeploymentGuardrails,
        report: GuardrailReport,
        stage: str,
        *,
        streamed: bool = False,
    ) -> GuardrailBlocked | None:
        """Count and remember every failing decision; a ``GuardrailBlocked`` naming the first
        blocking rule, if any."""
        blocking = None
        for decision in report.failed():
            action = "flag" if streamed else decision.action
            self.guardrail_decisions.labels(
                deployment=ctx.deployment.name, stage=stage, rule=decision.rule, action=action
            ).inc()
            if action == "block" and blocking is None:
                blocking = decision
            else:
                self._flags.setdefault(ctx.request_id, []).append(
                    f"guardrail flag: {stage} {decision.rule} ({decision.detail})"
                )
        if blocking is None:
            return None
        self._flags.pop(ctx.request_id, None)
        detail = f"guardrail block: {stage} {blocking.rule} ({blocking.detail})"
        message = f"{guard.refusal_message} [{blocking.rule}]" if guard.refusal_message else detail
        return GuardrailBlocked(
            message,
            detail=detail,
            param="messages" if stage == "input" else "output",
            code="guardrail_blocked",
        )

    def _rules(self, ctx: RequestContext) -> list[LimitRule]:
        key, config = ctx.principal.key, ctx.deployment.config
        tokens = ctx.prompt_estimate + ctx.completion_allowance
        rules = []
        specs = (
            ("key", key.id, "rpm", key.rpm, 1, f"requests per minute of key {key.name!r}"),
            ("key", key.id, "tpm", key.tpm, tokens, f"tokens per minute of key {key.name!r}"),
            ("deployment", config.name, "rpm", config.rpm, 1, f"requests per minute of {config.name!r}"),
            ("deployment", config.name, "tpm", config.tpm, tokens, f"tokens per minute of {config.name!r}"),
        )
        for kind, ident, unit, limit, amount, text in specs:
            if limit is not None:
                rules.append(
                    LimitRule(
                        f"{kind}:{ident}:{unit}", f"{kind}.{unit}", limit, amount, f"{unit}={limit} ({text})"
                    )
                )
        return rules

    async def _cached(self, ctx: RequestContext) -> Response | None:
        if self.cache is None or not is_deterministic(ctx.parsed.body):
            return None
        hit = await self.cache.get(cache_key(ctx.principal.key_id, ctx.deployment.name, ctx.parsed.body))
        self.metrics.cache.labels(result="hit" if hit else "miss").inc()
        if hit is None:
            return None
        prompt, completion = usage_of(hit)
        await self.finish(
            ctx,
            Outcome(
                200,
                prompt_tokens=prompt,
                completion_tokens=completion,
                completion=completion_of(hit),
                cache_hit=True,
            ),
        )
        return Response(
            json_bytes(hit), 200, media_type="application/json", headers={"x-llmops-cache": "hit"}
        )

    async def _reserve(self, ctx: RequestContext) -> None:
        key = ctx.principal.key
        if key.budget_usd is None:
            return
        config = ctx.deployment.config
        worst = worst_case_cost(
            config.price, ctx.prompt_worst_case, ctx.completion_allowance, config.timeouts.total_s
        )
        ctx.reservation = await self.budgets.reserve(key.id, key.name, key.budget_usd, worst)

    async def _complete(self, ctx: RequestContext, attempt: Attempt) -> Response:
        """A non-streamed answer (or any non-200 answer): read it whole, account, pass it on."""
        timeout = max(0.001, ctx.deployment.config.timeouts.total_s - ctx.elapsed())
        try:
            async with asyncio.timeout(timeout):
                body = await attempt.rest()
        except (UpstreamDisconnected, TimeoutError) as exc:
            await self.forwarder.release(attempt, ok=False)
            message = f"replica {attempt.replica.name} did not finish its answer: {exc or 'total timeout'}"
            await self.finish(
                ctx,
                Outcome(
                    502, attempt.arm.name, attempt.arm.model_version, attempt.replica.name, error=message
                ),
            )
            raise UpstreamError(message, code="upstream_broke_off") from exc
        await self.forwarder.release(attempt, ok=attempt.response.status < 500)
        payload = json_or_empty(body)
        prompt, completion = usage_of(payload)
        outcome = Outcome(
            attempt.response.status,
            attempt.arm.name,
            attempt.arm.model_version,
            attempt.replica.name,
            prompt_tokens=prompt,
            completion_tokens=completion,
            completion=completion_of(payload) if attempt.response.status == 200 else None,
            ttft_s=attempt.first_at - ctx.started,
            engine_seconds=engine_seconds(attempt.response.headers, ctx.elapsed()),
            error=None if attempt.response.status == 200 else body[:500].decode("utf-8", "replace"),
            charged=attempt.response.status == 200,
        )
        blocked = await self._guard_output(ctx, outcome)
        if blocked is not None:
            await self.finish(ctx, replace(outcome, status=blocked.status_code, error=blocked.detail))
            raise blocked
        await self.finish(ctx, outcome)
        if self.cache is not None and outcome.status == 200 and is_deterministic(ctx.parsed.body):
            await self.cache.put(
                cache_key(ctx.principal.key_id, ctx.deployment.name, ctx.parsed.body), payload
            )
        media = attempt.response.headers.get("content-type", "application/json")
        return Response(body, attempt.response.status, media_type=media)

    async def finish(self, ctx: RequestContext, outcome: Outcome) -> None:
        """Settle budget and limits, count metrics and log the row; once per request."""
        if ctx.finished:
            return
        ctx.finished = True
        config = ctx.deployment.config
        if ctx.parsed.stream and outcome.status == 200 and outcome.completion is not None:
            await self._guard_output(ctx, outcome, streamed=True)
        flags = self._flags.pop(ctx.request_id, [])
        if flags and outcome.error is None:
            outcome = replace(outcome, error="; ".join(flags)[:500])
        prompt = outcome.prompt_tokens if outcome.prompt_tokens is not None else ctx.prompt_estimate
        completion = outcome.completion_tokens or 0
        cost = (
            request_cost(config.price, prompt, completion, outcome.engine_seconds) if outcome.charged else 0.0
        )
        if ctx.reservation is not None:
            await self.budgets.settle(ctx.reservation, cost)
        await self._correct_tokens(ctx, (prompt + completion) if outcome.charged else 0)
        latency = ctx.elapsed()
        self.metrics.requests.labels(deployment=config.name, status=str(outcome.status)).inc()
        self.metrics.latency.labels(deployment=config.name).observe(latency)
        if outcome.ttft_s is not None:
            self.metrics.ttft.labels(deployment=config.name).observe(outcome.ttft_s)
        if self.log_writer is not None:
            await self._log(ctx, outcome, prompt, completion, cost, latency)
        if self.monitor is not None and outcome.status == 200 and outcome.model_version is not None:
            self._observe(ctx, outcome.model_version, outcome.completion)

    def _observe(self, ctx: RequestContext, model_version: str, completion: str | None) -> None:
        assert self.monitor is not None
        self.monitor.observe(
            request_id=ctx.request_id,
            deployment=ctx.deployment.name,
            model_version=model_version,
            prompt=ctx.parsed.prompt_text,
            completion=completion,
            key_id=ctx.principal.key_id,
        )

    async def _correct_tokens(self, ctx: RequestContext, actual: int) -> None:
        if ctx.admission is None:
            return
        estimate = ctx.prompt_estimate + ctx.completion_allowance
        for scope in ctx.admission.counted:
            if scope.endswith(":tpm"):
                await self.limiter.adjust(ctx.admission, scope, actual - estimate)

    def _log_refused(
        self, request_id: str, principal: Principal, endpoint: Endpoint, error: LLMOpsError
    ) -> None:
        """A request refused before it named a usable deployment (bad body, unknown model)."""
        self.metrics.requests.labels(deployment="", status=str(error.status_code)).inc()
        if self.log_writer is not None:
            record = RequestLogRecord(
                id=request_id,
                ts=utcnow(),
                endpoint=endpoint,
                key_id=principal.key_id,
                status=error.status_code,
                error=error.message[:500],
            )
            self.log_writer.submit(record)

    async def _log(
        self, ctx: RequestContext, outcome: Outcome, prompt: int, completion: int, cost: float, latency: float
    ) -> None:
        assert self.log_writer is not None
        keep_text = self.config.request_log.log_prompts
        prompt_text, completion_text = await self._protect(
            ctx.parsed.prompt_text if keep_text else None, outcome.completion if keep_text else None
        )
        record = RequestLogRecord(
            id=ctx.request_id,
            ts=ctx.ts,
            endpoint=ctx.parsed.endpoint,
            key_id=ctx.principal.key_id,
            user=ctx.parsed.user,
            deployment=ctx.deployment.name,
            model_version=outcome.model_version,
            arm=outcome.arm,
            replica=outcome.replica,
            stream=ctx.parsed.stream,
            prompt=prompt_text,
            completion=completion_text,
            prompt_tokens=prompt,
            completion_tokens=completion,
            ttft_ms=outcome.ttft_s * 1000 if outcome.ttft_s is not None else None,
            latency_ms=latency * 1000,
            status=outcome.status,
            cost_usd=cost,
            cache_hit=outcome.cache_hit,
            error=outcome.error,
        )
        if self.config.request_log.mode == "strict":
            await self.log_writer.commit(record)
        else:
            self.log_writer.submit(record)

    async def _protect(self, *texts: str | None) -> tuple[str | None, ...]:
        """Redact (when configured; in a thread, detection is not free) then encrypt (when keys are
        configured) the payloads of a log row."""
        mode = self.config.request_log.redact
        redactor = self.redactor
        if redactor is not None and mode != "off" and any(texts):

            def redact_all() -> tuple[str | None, ...]:
                return tuple(redactor.redact(t, mode).text if t else t for t in texts)

            texts = await asyncio.to_thread(redact_all)
        if self.cipher is not None:
            texts = tuple(self.cipher.encrypt(t) for t in texts)
        return texts


def _system_prompt(body: dict[str, Any]) -> str | None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    parts = [
        m["content"]
        for m in messages
        if isinstance(m, dict) and m.get("role") == "system" and isinstance(m.get("content"), str)
    ]
    return "\n".join(parts) or None


def json_bytes(payload: dict[str, object]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
