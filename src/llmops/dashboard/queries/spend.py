"""What each key has spent: the request log's cost per key, shadow copies left out (the same sum
the gateway's budget ledger starts from)."""

from __future__ import annotations

from sqlalchemy import func, select

from llmops.dashboard.queries.traffic import scanned
from llmops.store.database import Store
from llmops.store.schema import GatewayRequest


def spend_by_key(store: Store) -> dict[str, float]:
    key = scanned(store, GatewayRequest.key_id)  # grouped by an expression: one pass, no index walk
    query = (
        select(key, func.sum(GatewayRequest.cost_usd))
        .where(GatewayRequest.key_id.is_not(None), GatewayRequest.shadow_of.is_(None))
        .group_by(key)
    )
    with store.read() as session:
        return {str(key): float(total or 0.0) for key, total in session.execute(query)}
