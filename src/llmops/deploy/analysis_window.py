"""What each arm of a deployment did during an analysis window, read from the store.

Both arms are read over the same window ``[since, until)`` of the request log (``gateway_requests.ts``,
when the gateway received the request) and told apart by the version that served each request
(``model_version``), so a request is counted for the version that actually answered it. Online
evaluation results and feedback are joined to those requests by id: a score counts for the window of
the request it scores, whenever it was written. Requests without a version (refused before routing,
answered from the cache) belong to no arm. In the shadow stage the candidate's rows are the mirrored
copies (``shadow_of`` set) and stable's the primary ones. Blocking reads: call from a thread on an
event loop.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import and_, or_, select

from llmops.deploy.analysis import ArmWindow, RequestSample
from llmops.store.database import Store
from llmops.store.schema import GatewayRequest, OnlineEvalResult, RequestFeedback

GUARDRAIL_BLOCK_PREFIX = "guardrail block:"


def _sample(status: int, latency: float, ttft: float | None, cost: float, error: str | None) -> RequestSample:
    blocked = status == 400 and bool(error) and GUARDRAIL_BLOCK_PREFIX in (error or "")
    return RequestSample(status, float(latency), ttft, float(cost or 0.0), blocked)


def read_windows(
    store: Store,
    deployment: str,
    *,
    candidate_version: str,
    stable_version: str,
    since: datetime,
    until: datetime,
    shadow: bool = False,
    stable_window: tuple[datetime, datetime] | None = None,
) -> tuple[ArmWindow, ArmWindow]:
    """(candidate, stable) over ``[since, until)`` of ``deployment``; stable over ``stable_window``
    instead when given (a step sending it no traffic compares with stable's latest window)."""
    stable_since, stable_until = stable_window or (since, until)
    in_window = or_(
        and_(
            GatewayRequest.model_version == candidate_version,
            GatewayRequest.ts >= since,
            GatewayRequest.ts < until,
        ),
        and_(
            GatewayRequest.model_version == stable_version,
            GatewayRequest.ts >= stable_since,
            GatewayRequest.ts < stable_until,
        ),
    )
    base = select(GatewayRequest.id).where(GatewayRequest.deployment == deployment).where(in_window)
    rows_query = select(
        GatewayRequest.model_version,
        GatewayRequest.shadow_of,
        GatewayRequest.status,
        GatewayRequest.latency_ms,
        GatewayRequest.ttft_ms,
        GatewayRequest.cost_usd,
        GatewayRequest.error,
    ).where(GatewayRequest.id.in_(base.where(GatewayRequest.cache_hit.is_(False))))
    requests: dict[str, list[RequestSample]] = defaultdict(list)
    online: dict[str, list[float]] = defaultdict(list)
    feedback: dict[str, list[float]] = defaultdict(list)
    primary_ids = base.where(GatewayRequest.shadow_of.is_(None))
    with store.read() as session:
        for version, shadow_of, status, latency, ttft, cost, error in session.execute(rows_query):
            if version is None:
                continue
            mirrored = shadow_of is not None
            if shadow and version == candidate_version and not mirrored:
                continue  # the shadow stage compares mirrored candidate answers with stable's own
            if (not shadow or version == stable_version) and mirrored:
                continue
            requests[version].append(_sample(status, latency, ttft, cost, error))
        scores = select(OnlineEvalResult.model_version, OnlineEvalResult.value).where(
            OnlineEvalResult.request_id.in_(primary_ids), OnlineEvalResult.value.is_not(None)
        )
        for version, value in session.execute(scores):
            if value is not None:
                online[version].append(float(value))
        ratings = select(RequestFeedback.model_version, RequestFeedback.score, RequestFeedback.thumbs).where(
            RequestFeedback.request_id.in_(primary_ids)
        )
        for version, score, thumbs in session.execute(ratings):
            value = score if score is not None else ({"up": 1.0, "down": 0.0}.get(thumbs or ""))
            if value is not None and version is not None:
                feedback[version].append(float(value))

    def window(version: str) -> ArmWindow:
        return ArmWindow(version, tuple(requests[version]), tuple(online[version]), tuple(feedback[version]))

    return window(candidate_version), window(stable_version)
