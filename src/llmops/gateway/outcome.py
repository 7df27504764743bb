"""What happened to one request: the typed record the pipeline turns into cost, limits and a log row."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llmops.gateway.auth import Principal
from llmops.gateway.budgets import Reservation
from llmops.gateway.deployments import Deployment
from llmops.gateway.limits import Admission
from llmops.gateway.openai_request import COMPACT_JSON, ParsedRequest
from llmops.gateway.pricing import estimate_tokens, worst_case_prompt_tokens
from llmops.gateway.sse import completion_of
from llmops.store.schema import utcnow

TTFT_HEADER = "x-llmops-ttft-seconds"  # set by llmops replicas on whole (non-streamed) answers


@dataclass
class RequestContext:
    """One request on its way through the gateway. ``deployment`` is the one serving it: the
    requested one, or the fallback that took it over (admitted under ``fallback_admission``)."""

    request_id: str
    principal: Principal
    parsed: ParsedRequest
    deployment: Deployment
    started: float = field(default_factory=time.monotonic)
    ts: datetime = field(default_factory=utcnow)
    admission: Admission | None = None
    fallback_admission: Admission | None = None
    reservation: Reservation | None = None
    finished: bool = False
    # the arm (and the version it served) that was chosen but could not serve the request: a failed
    # request counts against that version (a canary whose replicas all fail is not invisible)
    unserved_arm: str | None = None
    unserved_version: str | None = None

    @property
    def prompt_estimate(self) -> int:
        return estimate_tokens(self.parsed.prompt_text)

    @property
    def prompt_worst_case(self) -> int:
        messages = self.parsed.body.get("messages")
        return worst_case_prompt_tokens(
            self.parsed.prompt_text, len(messages) if isinstance(messages, list) else 1
        )

    @property
    def completion_allowance(self) -> int:
        if not self.parsed.generates:
            return 0
        return self.parsed.max_tokens or self.deployment.config.max_output_tokens

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass
class Outcome:
    status: int
    arm: str | None = None
    model_version: str | None = None
    replica: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    completion: str | None = None
    ttft_s: float | None = None
    engine_seconds: float = 0.0
    cache_hit: bool = False
    error: str | None = None
    charged: bool = field(default=False)
    response_id: str | None = None


@dataclass
class Settled:
    """A settled request: its outcome (with guardrail flags), the tokens and cost it was charged,
    and its latency when it settled; what its metrics, log row and monitor observation record."""

    outcome: Outcome
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float


def usage_of(payload: dict[str, Any]) -> tuple[int | None, int | None]:
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None, None
    return usage.get("prompt_tokens"), usage.get("completion_tokens")


def whole_answer_ttft(headers: Mapping[str, str], sent_after_s: float) -> float | None:
    """Time to first token of an answer the gateway received whole: its own time until it sent the
    request (``sent_after_s``) plus the replica's reported seconds to the first token
    (``TTFT_HEADER``). None when the upstream does not report it (vLLM, a hosted API): the arrival of
    a whole answer says nothing about when its first token was made."""
    value = headers.get(TTFT_HEADER)
    if value is None:
        return None
    try:
        reported = float(value)
    except ValueError:
        return None
    return sent_after_s + reported if math.isfinite(reported) and reported >= 0 else None


def json_or_empty(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return payload if isinstance(payload, dict) else {}


def answer_text(parsed: ParsedRequest, payload: dict[str, object]) -> str | None:
    """What the log row and the monitor keep of an answer: the generated text, a classification's
    labels (one per line), nothing of embeddings."""
    if parsed.generates:
        return completion_of(payload)
    if parsed.endpoint != "classify" or not isinstance(payload.get("data"), list):
        return None
    items = payload["data"]
    assert isinstance(items, list)
    return "\n".join(str(item.get("label", "")) for item in items if isinstance(item, dict))


def response_id_of(payload: dict[str, object]) -> str | None:
    value = payload.get("id")
    return value if isinstance(value, str) and value else None


def json_bytes(payload: dict[str, object]) -> bytes:
    return COMPACT_JSON.encode(payload).encode()
