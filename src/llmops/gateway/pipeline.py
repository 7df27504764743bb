"""One completion request through the gateway: admit, (cache), reserve, forward, settle, log.

Order and why: the deployment is resolved first (404 lists what the key may use); rate limits
count the request (tokens as an estimate); the deployment's input guardrails check the prompt (a
blocked one never reaches a replica); a cache hit is answered at no cost; the budget reserves
the worst-case cost; the request goes to a replica (retries in ``forward``); then ``finish``
settles the budget at the actual cost and corrects the token count (``settle``), then records
metrics, writes the log row (relaxed: queued; strict: committed before the response completes) and
feeds an answered request to the monitor (drift, online evaluation, feedback) (``record``).
``finish`` runs exactly once for every admitted request, whatever happens. A whole answer is
settled before it is returned; in relaxed mode it is recorded once it has been sent
(``answer.RecordedResponse``: the client does not wait for the bookkeeping), in strict mode
before. Output guardrails check a whole answer before it is returned and a streamed one at its
end (flag only); flags and blocks go to the row's ``error`` and to
``llmops_gateway_guardrail_total``. The log writer protects every row (``log_protection``).

Fallbacks: when no replica of the requested deployment can take the request, its fallbacks are
tried in order, but only those the key may use, and each under its own policy, as if asked for by
name: its rate limits count the request, its input guardrails check the prompt, the budget hold
moves to its price. A fallback whose policy refuses is skipped (its refusal is the answer when no
later one serves). From then on the serving deployment is the request's: its output guardrails,
its price, its name in the log row and the metrics.

Upstream failures reach the client as a generic message naming the request id; the detail
(replica addresses, what they answered) goes to the gateway's log and the request's row.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial

from starlette.responses import Response

from llmops.errors import LLMOpsError
from llmops.gateway.admission import RedisAdmission
from llmops.gateway.answer import RecordedResponse
from llmops.gateway.auth import Principal
from llmops.gateway.budgets import BudgetLedger
from llmops.gateway.cache import ResponseCache, cache_key, is_deterministic
from llmops.gateway.config import GatewayConfig
from llmops.gateway.deployments import Deployment, DeploymentTable
from llmops.gateway.forward import Attempt, Forwarder, NotServed, not_served_error, upstream_failed
from llmops.gateway.guard import Guard
from llmops.gateway.limits import Admission, LimitRule, RateLimiter
from llmops.gateway.metrics import GatewayMetrics
from llmops.gateway.monitoring import GatewayMonitor
from llmops.gateway.openai_request import Endpoint, parse_request
from llmops.gateway.outcome import (
    Outcome,
    RequestContext,
    Settled,
    answer_text,
    json_bytes,
    json_or_empty,
    response_id_of,
    usage_of,
    whole_answer_ttft,
)
from llmops.gateway.pricing import engine_seconds, request_cost, worst_case_cost
from llmops.gateway.relay import RelayResponse
from llmops.gateway.request_log import RequestLogRecord, RequestLogWriter
from llmops.gateway.shadow import ShadowMirror
from llmops.gateway.upstreams import UpstreamDisconnected
from llmops.store.schema import utcnow

log = logging.getLogger(__name__)
RESPONSE_IDS_KEPT = 10_000  # answers not yet in the request log; the log holds the rest


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
    admitter: RedisAdmission | None = None  # limits and budgets in Redis: one round trip to admit
    _response_ids: OrderedDict[str, str] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.guard = Guard(self.metrics)

    async def handle(self, request_id: str, principal: Principal, raw: bytes, endpoint: Endpoint) -> Response:
        try:
            parsed = parse_request(raw, endpoint)
            deployment = self.table.find(parsed.model, principal.key.may_use)
        except LLMOpsError as exc:
            await self._log_refused(request_id, principal, endpoint, exc)
            raise
        ctx = RequestContext(request_id, principal, parsed, deployment)
        try:
            await self._admit(ctx)
        except LLMOpsError as exc:
            await self.finish(ctx, Outcome(status=exc.status_code, error=exc.message))
            raise
        try:
            await self.guard.check_input(ctx)
            cached = await self._cached(ctx)
            if cached is not None:
                return cached
            await self._reserve(ctx)
            self.shadow.maybe_mirror(ctx)
            attempt = await self._open(ctx)
        except BaseException as exc:
            status = exc.status_code if isinstance(exc, LLMOpsError) else 500
            error = exc.detail or exc.message if isinstance(exc, LLMOpsError) else type(exc).__name__
            outcome = Outcome(status, ctx.unserved_arm, ctx.unserved_version, error=error)
            await self.finish(ctx, outcome)
            raise
        if parsed.stream and attempt.response.status == 200:
            return RelayResponse(ctx, attempt, self.forwarder, self.finish)
        return await self._complete(ctx, attempt)

    def request_of(self, response_id: str) -> str | None:
        """The request id of a response id (``chatcmpl-...``) this worker answered recently."""
        return self._response_ids.get(response_id)

    # ---- serving: the requested deployment, then its fallbacks ----
    async def _open(self, ctx: RequestContext) -> Attempt:
        requested = ctx.deployment
        try:
            return await self.forwarder.open(requested, ctx.parsed, ctx.request_id)
        except NotServed as failure:
            log.warning("request %s: %s", ctx.request_id, failure.detail)
            unserved, refused = failure, None
            ctx.unserved_arm, ctx.unserved_version = failure.arm, failure.model_version or None
        for name in requested.config.fallbacks:
            if not ctx.principal.key.may_use(name):
                continue
            try:
                await self._take_over(ctx, self.table.get(name))
            except LLMOpsError as exc:
                refused = exc
                continue
            try:
                return await self.forwarder.open(ctx.deployment, ctx.parsed, ctx.request_id)
            except NotServed as failure:
                log.warning("request %s: %s", ctx.request_id, failure.detail)
                unserved = failure
        if refused is not None:
            raise refused
        ctx.deployment = requested
        raise not_served_error(ctx.request_id, unserved)

    async def _take_over(self, ctx: RequestContext, fallback: Deployment) -> None:
        """Make ``fallback`` the request's deployment, admitted under its own policy (limits,
        input guardrails, budget at its price); raises its refusal."""
        if ctx.reservation is not None:
            await self.budgets.settle(ctx.reservation, 0.0)
            ctx.reservation = None
        ctx.deployment = fallback
        ctx.fallback_admission = await self.limiter.acquire(self._deployment_rules(ctx))
        await self.guard.check_input(ctx)
        await self._reserve(ctx)

    # ---- admission ----
    async def _admit(self, ctx: RequestContext) -> None:
        """Count the request against the limits; and, when nothing has to run in between (no input
        guardrails, no cache lookup), hold its budget in the same Redis round trip."""
        rules = self._key_rules(ctx) + self._deployment_rules(ctx)
        key = ctx.principal.key
        if self.admitter is None or key.budget_usd is None or self._checks_before_reserving(ctx):
            ctx.admission = await self.limiter.acquire(rules)
            return
        worst = self._worst_case(ctx)
        ctx.admission, held = await self.admitter.admit(rules, key.id, key.name, key.budget_usd, worst)
        if isinstance(held, LLMOpsError):
            raise held
        ctx.reservation = held

    def _checks_before_reserving(self, ctx: RequestContext) -> bool:
        """Whether input guardrails or a cache lookup run between the limits and the budget hold."""
        guard = ctx.deployment.config.guardrails
        if guard is not None and guard.check_input:
            return True
        return self.cache is not None and is_deterministic(ctx.parsed.body)

    def _key_rules(self, ctx: RequestContext) -> list[LimitRule]:
        key = ctx.principal.key
        return _rules(
            "key", key.id, key.name, key.rpm, key.tpm, ctx.prompt_estimate + ctx.completion_allowance
        )

    def _deployment_rules(self, ctx: RequestContext) -> list[LimitRule]:
        config = ctx.deployment.config
        tokens = ctx.prompt_estimate + ctx.completion_allowance
        return _rules("deployment", config.name, config.name, config.rpm, config.tpm, tokens)

    def _cache_key(self, ctx: RequestContext) -> str:
        return cache_key(ctx.principal.key_id, ctx.deployment.name, ctx.parsed.endpoint, ctx.parsed.body)

    async def _cached(self, ctx: RequestContext) -> Response | None:
        if self.cache is None or not is_deterministic(ctx.parsed.body):
            return None
        hit = await self.cache.get(self._cache_key(ctx))
        self.metrics.child("cache", "hit" if hit else "miss").inc()
        if hit is None:
            return None
        prompt, completion = usage_of(hit)
        await self.finish(
            ctx,
            Outcome(
                200,
                prompt_tokens=prompt,
                completion_tokens=completion,
                completion=answer_text(ctx.parsed, hit),
                cache_hit=True,
                response_id=response_id_of(hit),
            ),
        )
        return Response(
            json_bytes(hit), 200, media_type="application/json", headers={"x-llmops-cache": "hit"}
        )

    async def _reserve(self, ctx: RequestContext) -> None:
        key = ctx.principal.key
        if key.budget_usd is None or ctx.reservation is not None:  # held already when admitted
            return
        ctx.reservation = await self.budgets.reserve(key.id, key.name, key.budget_usd, self._worst_case(ctx))

    def _worst_case(self, ctx: RequestContext) -> float:
        config = ctx.deployment.config
        return worst_case_cost(
            config.price, ctx.prompt_worst_case, ctx.completion_allowance, config.timeouts.total_s
        )

    async def _complete(self, ctx: RequestContext, attempt: Attempt) -> Response:
        """A non-streamed answer (or any non-200 answer): read it whole, account, pass it on (an
        upstream 5xx body stays with the operator: the client gets a generic 502)."""
        timeout = max(0.001, ctx.deployment.config.timeouts.total_s - ctx.elapsed())
        arm, replica = attempt.arm, attempt.replica.name
        try:
            body = await attempt.rest_within(timeout)
        except (UpstreamDisconnected, TimeoutError) as exc:
            await self.forwarder.release(attempt, ok=False)
            detail = f"replica {replica} did not finish its answer: {str(exc) or 'total timeout'}"
            log.warning("request %s: %s", ctx.request_id, detail)
            await self.finish(ctx, Outcome(502, arm.name, attempt.model_version, replica, error=detail))
            raise upstream_failed(ctx.request_id, ctx.deployment.name, detail, "upstream_broke_off") from exc
        status = attempt.response.status
        await self.forwarder.release(attempt, ok=status < 500)
        payload = json_or_empty(body)
        prompt, completion = usage_of(payload)
        outcome = Outcome(
            status,
            arm.name,
            attempt.model_version,
            replica,
            prompt_tokens=prompt,
            completion_tokens=completion,
            completion=answer_text(ctx.parsed, payload) if status == 200 else None,
            ttft_s=whole_answer_ttft(attempt.response.headers, attempt.started - ctx.started),
            engine_seconds=engine_seconds(attempt.response.headers, ctx.elapsed()),
            error=None if status == 200 else body[:500].decode("utf-8", "replace"),
            charged=status == 200,
            response_id=response_id_of(payload) if status == 200 else None,
        )
        if status >= 500:
            detail = f"replica {replica} answered {status}: {outcome.error}"
            log.warning("request %s: %s", ctx.request_id, detail)
            await self.finish(ctx, replace(outcome, error=detail))
            raise upstream_failed(ctx.request_id, ctx.deployment.name, detail, "upstream_error")
        blocked = await self.guard.check_output(ctx, outcome)
        if blocked is not None:
            await self.finish(ctx, replace(outcome, status=blocked.status_code, error=blocked.detail))
            raise blocked
        settled = await self.settle(ctx, outcome)
        if self.cache is not None and status == 200 and is_deterministic(ctx.parsed.body):
            await self.cache.put(self._cache_key(ctx), payload)
        media = attempt.response.headers.get("content-type", "application/json")
        if settled is None:
            return Response(body, status, media_type=media)
        if self.config.request_log.mode == "strict":  # the row is committed before the answer
            await self.record(ctx, settled)
            return Response(body, status, media_type=media)
        return RecordedResponse(body, status, media, partial(self.record, ctx, settled))

    # ---- settling ----
    async def finish(self, ctx: RequestContext, outcome: Outcome) -> None:
        """Settle budget and limits, count metrics and log the row; once per request."""
        settled = await self.settle(ctx, outcome)
        if settled is not None:
            await self.record(ctx, settled)

    async def settle(self, ctx: RequestContext, outcome: Outcome) -> Settled | None:
        """Charge the budget and correct the token limits (the first part of ``finish``); None
        when the request was settled already."""
        if ctx.finished:
            return None
        ctx.finished = True
        config = ctx.deployment.config
        if ctx.parsed.stream and outcome.status == 200 and outcome.completion is not None:
            await self.guard.check_output(ctx, outcome, streamed=True)
        flags = self.guard.pop_flags(ctx.request_id)
        if flags and outcome.error is None:
            outcome = replace(outcome, error="; ".join(flags)[:500])
        prompt = outcome.prompt_tokens if outcome.prompt_tokens is not None else ctx.prompt_estimate
        completion = outcome.completion_tokens or 0
        cost = (
            request_cost(config.price, prompt, completion, outcome.engine_seconds) if outcome.charged else 0.0
        )
        actual = (prompt + completion) if outcome.charged else 0
        if self.admitter is not None:  # one batched round trip for the charge and the corrections
            await self.admitter.settle(ctx.reservation, cost, self._corrections(ctx, actual))
        else:
            if ctx.reservation is not None:
                await self.budgets.settle(ctx.reservation, cost)
            for admission, scope, delta in self._corrections(ctx, actual):
                await self.limiter.adjust(admission, scope, delta)
        return Settled(outcome, prompt, completion, cost, ctx.elapsed())

    async def record(self, ctx: RequestContext, settled: Settled) -> None:
        """Count the metrics, log the row and feed the monitor (the second part of ``finish``)."""
        outcome = settled.outcome
        self.metrics.count_request(
            ctx.deployment.config.name, outcome.status, settled.latency_s, outcome.ttft_s
        )
        if outcome.response_id is not None:
            self._remember_response(outcome.response_id, ctx.request_id)
        if self.log_writer is not None:
            await self._log(ctx, settled)
        if self.monitor is not None and outcome.status == 200 and outcome.model_version is not None:
            self._observe(ctx, outcome.model_version, outcome.completion)

    def _remember_response(self, response_id: str, request_id: str) -> None:
        self._response_ids[response_id] = request_id
        self._response_ids.move_to_end(response_id)
        while len(self._response_ids) > RESPONSE_IDS_KEPT:
            self._response_ids.popitem(last=False)

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

    def _corrections(self, ctx: RequestContext, actual: int) -> list[tuple[Admission, str, int]]:
        """(admission, token counter, actual minus estimated tokens) of each counted token limit."""
        delta = actual - (ctx.prompt_estimate + ctx.completion_allowance)
        return [
            (admission, scope, delta)
            for admission in (ctx.admission, ctx.fallback_admission)
            if admission is not None
            for scope in admission.counted
            if scope.endswith(":tpm")
        ]

    async def _log_refused(
        self, request_id: str, principal: Principal, endpoint: Endpoint, error: LLMOpsError
    ) -> None:
        """A request refused before it named a usable deployment (bad body, unknown model)."""
        self.metrics.child("requests", "", str(error.status_code)).inc()
        if self.log_writer is not None:
            record = RequestLogRecord(
                id=request_id,
                ts=utcnow(),
                endpoint=endpoint,
                key_id=principal.key_id,
                status=error.status_code,
                error=error.message[:500],
            )
            await self.log_writer.submit(record)

    async def _log(self, ctx: RequestContext, settled: Settled) -> None:
        """The row as it happened; the writer protects its payloads (drop, redact, encrypt)."""
        assert self.log_writer is not None
        outcome = settled.outcome
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
            response_id=outcome.response_id,
            stream=ctx.parsed.stream,
            prompt=ctx.parsed.prompt_text,
            completion=outcome.completion,
            prompt_tokens=settled.prompt_tokens,
            completion_tokens=settled.completion_tokens,
            ttft_ms=outcome.ttft_s * 1000 if outcome.ttft_s is not None else None,
            latency_ms=settled.latency_s * 1000,
            status=outcome.status,
            cost_usd=settled.cost_usd,
            cache_hit=outcome.cache_hit,
            error=outcome.error,
        )
        if self.config.request_log.mode == "strict":
            await self.log_writer.commit(record)
        else:
            await self.log_writer.submit(record)


def _rules(
    kind: str, ident: str, owner: str, rpm: int | None, tpm: int | None, tokens: int
) -> list[LimitRule]:
    """The requests- and tokens-per-minute rules of a key or a deployment (those it has)."""
    rules = []
    for unit, limit, amount in (("rpm", rpm, 1), ("tpm", tpm, tokens)):
        if limit is not None:
            scope, name, description = _rule_text(kind, ident, unit, limit, owner)
            rules.append(LimitRule(scope, name, limit, amount, description))
    return rules


@lru_cache(maxsize=4096)
def _rule_text(kind: str, ident: str, unit: str, limit: int, owner: str) -> tuple[str, str, str]:
    """A rule's counter, the name a client sees (``key.rpm``) and its description: the same
    strings on every request of a key or deployment, made once."""
    what = "requests" if unit == "rpm" else "tokens"
    whose = f"key {owner!r}" if kind == "key" else repr(owner)
    return f"{kind}:{ident}:{unit}", f"{kind}.{unit}", f"{unit}={limit} ({what} per minute of {whose})"
