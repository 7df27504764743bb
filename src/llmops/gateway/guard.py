"""A deployment's guardrails in the gateway: input checked before forwarding, output before returning.

``Guard`` checks a request against the guardrails of the deployment that serves it (the requested
one, or the fallback that took it over); failing decisions are counted in
``llmops_gateway_guardrail_total{deployment,stage,rule,action}`` and remembered per request as
flags for its log row. A block becomes a 400 ``guardrail_blocked``.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from llmops.errors import InvalidInput
from llmops.gateway.config import DeploymentGuardrails
from llmops.gateway.metrics import GatewayMetrics
from llmops.gateway.outcome import Outcome, RequestContext
from llmops.security.guardrails import GuardrailReport, check_input, check_output

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
    client is told (a deployment's refusal message), so a block is always recognisable in the log
    (the rollout analysis counts them).
    """


@dataclass
class Guard:
    metrics: GatewayMetrics
    _flags: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.decisions = guardrail_counter(self.metrics)

    async def check_input(self, ctx: RequestContext) -> None:
        """Raise ``GuardrailBlocked`` when the serving deployment's input guardrails block the prompt."""
        guard = ctx.deployment.config.guardrails
        if guard is None or not guard.check_input:
            return
        report = await asyncio.to_thread(check_input, ctx.parsed.prompt_text, guard)
        blocked = self._record(ctx, guard, report, "input")
        if blocked is not None:
            raise blocked

    async def check_output(
        self, ctx: RequestContext, outcome: Outcome, *, streamed: bool = False
    ) -> GuardrailBlocked | None:
        """Check an answer; the error to return when it is blocked (a streamed answer was already
        sent: its failing checks are recorded as flags). Only generated text is checked: the labels
        of a classification come from the model's fixed label set."""
        guard = ctx.deployment.config.guardrails
        if guard is None or not guard.check_output or outcome.status != 200 or outcome.completion is None:
            return None
        if not ctx.parsed.generates:
            return None
        system = _system_prompt(ctx.parsed.body)
        report = await asyncio.to_thread(check_output, outcome.completion, guard, system_prompt=system)
        return self._record(ctx, guard, report, "output", streamed=streamed)

    def pop_flags(self, request_id: str) -> list[str]:
        return self._flags.pop(request_id, [])

    def _record(
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
            self.decisions.labels(
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
        blocked = GuardrailBlocked(
            message, param="messages" if stage == "input" else "output", code="guardrail_blocked"
        )
        blocked.detail = detail
        return blocked


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
