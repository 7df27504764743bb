"""Load shedding: refuse an API request at once (503 with Retry-After) when a worker has no room.

A worker serves at most ``max_in_flight`` API requests (POST under /v1/) at once. When replicas
answer slower than requests arrive, requests pile up in the gateway, each holding a connection and
memory while its client waits; past the limit a new one is refused before its body is read, so the
client learns at once to retry later instead of timing out, and the requests already admitted keep
their latency. Refusals are counted in ``llmops_gateway_shed``.

A request takes its place (``Slot.take``) only once its whole body has arrived: a client that
sends its body slowly, or never finishes it (slow loris), holds a connection but no place, so any
number of them cannot lock the others out. The limit is checked when the request arrives (a refusal
then costs no body read) and again when it takes its place (requests arriving together).
"""

from __future__ import annotations

from llmops.errors import Overloaded
from llmops.gateway.config import HttpLimitsConfig
from llmops.gateway.metrics import GatewayMetrics


class LoadShedder:
    def __init__(self, limits: HttpLimitsConfig, metrics: GatewayMetrics | None = None) -> None:
        self.limits = limits
        self.metrics = metrics
        self.in_flight = 0

    def refusal(self) -> Overloaded | None:
        """The 503 a new API request gets now, or None when there is room for it."""
        if self.in_flight < self.limits.max_in_flight:
            return None
        if self.metrics is not None:
            self.metrics.shed.inc()
        return Overloaded(
            f"the gateway is serving its limit of {self.limits.max_in_flight} requests at once; "
            "retry shortly",
            retry_after=1,
            code="gateway_overloaded",
        )


class Slot:
    """One request's place among those in flight, taken when its body is complete."""

    def __init__(self, shedder: LoadShedder) -> None:
        self.shedder = shedder
        self.taken = False

    def take(self) -> None:
        """Take the place, or raise the 503 when the others took the last one meanwhile."""
        if self.taken:
            return
        refusal = self.shedder.refusal()
        if refusal is not None:
            raise refusal
        self.taken = True
        self.shedder.in_flight += 1

    def release(self) -> None:
        if self.taken:
            self.taken = False
            self.shedder.in_flight -= 1
