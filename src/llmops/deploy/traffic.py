"""The traffic split of a deployment, as the rollout controller sets it: through the store.

The gateway's admin API persists a deployment's weights and replicas in ``gateway_deployments``
(``gateway.overrides``), and every gateway worker applies that row within its sync interval. The
controller writes only the ``weights`` of that row (replicas are the deploy target's), in one
transaction with an audit event, locking the row so a concurrent replica registration is not lost.
Because a gateway worker persisting its own view could write older weights back, the controller
re-asserts its split on every tick (``ensure_weights``): the store converges on the rollout's split.
"""

from __future__ import annotations

from sqlalchemy import select

from llmops.store import audit
from llmops.store.database import Store
from llmops.store.schema import GatewayDeployment, utcnow


def current_weights(store: Store, deployment: str) -> dict[str, float] | None:
    """The persisted split of ``deployment``, or None when the gateway's config file still rules."""
    with store.read() as session:
        row = session.get(GatewayDeployment, deployment)
        if row is None or "weights" not in (row.spec or {}):
            return None
        return {arm: float(w) for arm, w in row.spec["weights"].items()}


def set_weights(
    store: Store, deployment: str, weights: dict[str, float], *, actor: str, reason: str | None
) -> bool:
    """Persist ``weights`` (arm → share) for ``deployment``; False when they were already set."""
    with store.transaction() as session:
        query = select(GatewayDeployment).where(GatewayDeployment.name == deployment).with_for_update()
        row = session.execute(query).scalar_one_or_none()
        before = dict(row.spec) if row is not None else None
        old = dict((before or {}).get("weights", {}))
        new = {**old, **{arm: float(w) for arm, w in weights.items()}}
        if row is not None and old == new:
            return False
        spec = {**(before or {}), "weights": new}
        if row is None:
            session.add(GatewayDeployment(name=deployment, spec=spec, updated_by=actor, updated_at=utcnow()))
        else:
            row.spec, row.updated_by, row.updated_at = spec, actor, utcnow()
        audit.append(
            session,
            actor=actor,
            action="gateway.split.set",
            target=f"deployment:{deployment}",
            reason=reason,
            before={"weights": old},
            after={"weights": new},
        )
        return True


def ensure_weights(
    store: Store, deployment: str, weights: dict[str, float], *, actor: str, reason: str
) -> bool:
    """Set ``weights`` unless the store already holds them (cheap to call on every tick)."""
    current = current_weights(store, deployment) or {}
    if all(current.get(arm) == float(w) for arm, w in weights.items()):
        return False
    return set_weights(store, deployment, weights, actor=actor, reason=reason)
