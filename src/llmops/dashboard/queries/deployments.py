"""Deployments as the dashboard shows them: arms, models, weights and replicas.

Served by the gateway, the view is the gateway's live table (replica health and load included);
over a store alone, it is what the store holds of each deployment changed through the admin API or
a supervisor (arms, split, replicas by URL; health unknown).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from llmops.store.database import Store
from llmops.store.schema import GatewayDeployment


@dataclass(frozen=True)
class ReplicaView:
    name: str
    available: bool | None
    outstanding: int | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class ArmView:
    name: str
    model: str
    weight: float
    replicas: list[ReplicaView] = field(default_factory=list)


@dataclass(frozen=True)
class DeploymentView:
    name: str
    arms: list[ArmView]
    source: str
    updated_by: str | None = None
    updated_at: datetime | None = None

    @property
    def share(self) -> dict[str, float]:
        """Each arm's share of traffic in percent."""
        total = sum(a.weight for a in self.arms) or 1.0
        return {a.name: 100.0 * a.weight / total for a in self.arms}


def _from_live(view: dict[str, Any]) -> DeploymentView:
    arms = [
        ArmView(
            name=arm["name"],
            model=arm["model"] or "-",
            weight=float(arm["weight"]),
            replicas=[
                ReplicaView(r["name"], bool(r["available"]), int(r["outstanding"]), r.get("last_error"))
                for r in arm["replicas"]
            ],
        )
        for arm in view["arms"]
    ]
    return DeploymentView(view["name"], arms, source="gateway")


def _from_row(row: GatewayDeployment) -> DeploymentView:
    spec = row.spec or {}
    weights = spec.get("weights") or {}
    replicas = spec.get("replicas") or {}
    models = {arm["name"]: arm.get("model") or "-" for arm in spec.get("arms") or []}
    names = list(models) or list(weights)
    arms = [
        ArmView(
            name=name,
            model=models.get(name, "-"),
            weight=float(weights.get(name, 0.0)),
            replicas=[ReplicaView(r.get("name") or r.get("url", "?"), None) for r in replicas.get(name, [])],
        )
        for name in names
    ]
    return DeploymentView(row.name, arms, "store", row.updated_by, row.updated_at)


def list_deployments(
    store: Store, live: Callable[[], list[dict[str, Any]]] | None = None
) -> list[DeploymentView]:
    """The gateway's live deployments (when it serves the dashboard), then the store's others
    (a split or replicas a rollout or supervisor wrote; deleted ones left out)."""
    found = [_from_live(view) for view in live()] if live is not None else []
    seen = {d.name for d in found}
    with store.read() as session:
        rows = session.execute(select(GatewayDeployment).order_by(GatewayDeployment.name)).scalars()
        found += [
            _from_row(row) for row in rows if row.name not in seen and not (row.spec or {}).get("deleted")
        ]
    return found
