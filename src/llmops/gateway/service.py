"""The gateway's parts wired together from a ``GatewayConfig`` and a ``Home`` (no globals).

``build_gateway`` picks the implementations the configuration names (memory or Redis limits,
budgets and cache; HTTP replicas from URLs plus in-process ones handed over by the caller) and
returns one ``Gateway`` object that the app keeps in ``app.state.gateway``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy import func, select

from llmops.gateway.admission import RedisAdmission
from llmops.gateway.auth import KeyCache
from llmops.gateway.budgets import BudgetLedger, MemoryBudgetLedger, RedisBudgetLedger
from llmops.gateway.cache import MemoryResponseCache, RedisResponseCache, ResponseCache
from llmops.gateway.config import GatewayConfig
from llmops.gateway.deployments import (
    DeploymentTable,
    UpstreamFactory,
    VersionResolver,
    http_upstream_factory,
)
from llmops.gateway.forward import Forwarder
from llmops.gateway.health import HealthChecker
from llmops.gateway.limits import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from llmops.gateway.log_protection import LogProtection
from llmops.gateway.metrics import GatewayMetrics
from llmops.gateway.monitoring import GatewayMonitor
from llmops.gateway.overrides import OverrideSync, read_specs
from llmops.gateway.pipeline import Pipeline
from llmops.gateway.request_log import RequestLogWriter
from llmops.gateway.shadow import ShadowMirror
from llmops.gateway.upstreams import Upstream
from llmops.registry.client import Registry
from llmops.security.keys import KeyStore
from llmops.security.payload_protection import PayloadProtection
from llmops.store.database import Store
from llmops.store.home import Home
from llmops.store.schema import GatewayRequest


@dataclass
class Gateway:
    config: GatewayConfig
    home: Home
    keys: KeyStore
    key_cache: KeyCache
    table: DeploymentTable
    metrics: GatewayMetrics
    pipeline: Pipeline
    health: HealthChecker
    log_writer: RequestLogWriter | None
    overrides: OverrideSync
    monitor: GatewayMonitor | None = None
    redis: Redis | None = None
    active_health_checks: bool = True
    _started: bool = field(default=False)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.monitor is not None:
            await self.monitor.start()
        for deployment in self.table.all():
            for replica in deployment.replicas():
                await replica.upstream.start()
        if self.log_writer is not None:
            await self.log_writer.start()
        if self.active_health_checks:
            self.health.start()
        self.overrides.start()

    async def close(self) -> None:
        if not self._started:
            return
        self._started = False
        await self.health.stop()
        await self.overrides.stop()
        await self.pipeline.shadow.close()
        if self.monitor is not None:
            await self.monitor.stop()
        if self.log_writer is not None:
            await self.log_writer.close()
        for deployment in self.table.all():
            for replica in deployment.replicas():
                with contextlib.suppress(Exception):
                    await replica.upstream.aclose()
        if self.redis is not None:
            await self.redis.aclose()
            await self.redis.connection_pool.disconnect()


def spent_loader(store: Store) -> Callable[[str], float]:
    """What a key has spent so far, from the request log (shadow rows are not charged)."""

    def load(key_id: str) -> float:
        with store.read() as session:
            query = select(func.coalesce(func.sum(GatewayRequest.cost_usd), 0.0)).where(
                GatewayRequest.key_id == key_id, GatewayRequest.shadow_of.is_(None)
            )
            return float(session.execute(query).scalar_one())

    return load


def registry_resolver(home: Home) -> VersionResolver:
    registry = Registry.from_home(home)

    def resolve(ref: str) -> str:
        return registry.get(ref).ref

    return resolve


def build_gateway(
    config: GatewayConfig,
    home: Home,
    *,
    in_process: dict[str, list[Upstream]] | None = None,
    make_upstream: UpstreamFactory | None = None,
    rng: random.Random | None = None,
    active_health_checks: bool = True,
) -> Gateway:
    """Wire a gateway. ``in_process`` adds upstreams to arms (keys ``deployment`` or ``deployment/arm``)."""
    rng = rng or random.Random()
    metrics = GatewayMetrics(config.metrics_multiprocess_dir)
    redis = _redis(config)
    make_upstream = make_upstream or http_upstream_factory(config)
    resolver = registry_resolver(home)
    table = DeploymentTable.build(config, make_upstream, resolver, in_process)
    overrides = OverrideSync(home.store, table, make_upstream, config.admin_sync_s, resolver)
    overrides.apply(read_specs(home.store))  # start-up: changes made through the admin API
    keys = KeyStore.from_home(home)
    # one protection step for every stored payload: request rows and feedback text alike
    protection = PayloadProtection.from_settings(config.request_log.redact)
    log_writer = None
    if config.request_log.enabled:
        spill = config.request_log.spill_dir or home.settings.resolved_home() / "gateway-spill"
        log_protection = LogProtection(config.request_log.log_prompts, protection)
        log_writer = RequestLogWriter(home.store, Path(spill), config.request_log, metrics, log_protection)
    forwarder = Forwarder(table, config.health, metrics, rng)
    monitor = (
        GatewayMonitor(config.monitor, home, table, metrics.registry, protection=protection)
        if config.monitor.enabled
        else None
    )
    limiter = _limiter(config, redis, metrics)
    budgets = _budgets(config, redis, home.store)
    pipeline = Pipeline(
        config=config,
        table=table,
        limiter=limiter,
        budgets=budgets,
        forwarder=forwarder,
        metrics=metrics,
        shadow=ShadowMirror(forwarder, log_writer, metrics, rng),
        cache=_cache(config, redis),
        log_writer=log_writer,
        monitor=monitor,
        admitter=_admitter(redis, limiter, budgets),
    )
    return Gateway(
        config=config,
        home=home,
        keys=keys,
        key_cache=KeyCache(keys, config.auth),
        table=table,
        metrics=metrics,
        pipeline=pipeline,
        health=HealthChecker(table, config.health),
        log_writer=log_writer,
        overrides=overrides,
        monitor=monitor,
        redis=redis,
        active_health_checks=active_health_checks,
    )


def _redis(config: GatewayConfig) -> Redis | None:
    """One pooled client; callers wait for a free connection instead of failing (and failing open)."""
    if not config.redis_url:
        return None
    pool = BlockingConnectionPool.from_url(
        config.redis_url, max_connections=256, timeout=5, socket_connect_timeout=2, socket_timeout=5
    )
    return Redis(connection_pool=pool)


def _limiter(config: GatewayConfig, redis: Redis | None, metrics: GatewayMetrics) -> RateLimiter:
    if config.limits.backend == "redis" and redis is not None:
        return RedisRateLimiter(
            redis,
            config.redis_prefix,
            metrics,
            window_s=config.limits.window_s,
            fail_mode=config.limits.fail_mode,
        )
    return MemoryRateLimiter(config.limits.window_s)


def _budgets(config: GatewayConfig, redis: Redis | None, store: Store) -> BudgetLedger:
    # Budgets follow the limits backend: shared when limits are shared.
    if config.limits.backend == "redis" and redis is not None:
        # a crashed worker's holds expire, but never before its longest request could have ended
        longest = max((d.timeouts.total_s for d in config.deployments), default=300.0)
        return RedisBudgetLedger(redis, config.redis_prefix, hold_s=longest + 60)
    return MemoryBudgetLedger(spent_loader(store))


def _admitter(redis: Redis | None, limiter: RateLimiter, budgets: BudgetLedger) -> RedisAdmission | None:
    """Limits and budgets both in Redis: admitted in one script, settled in batches."""
    if (
        redis is None
        or not isinstance(limiter, RedisRateLimiter)
        or not isinstance(budgets, RedisBudgetLedger)
    ):
        return None
    return RedisAdmission(redis, limiter, budgets)


def _cache(config: GatewayConfig, redis: Redis | None) -> ResponseCache | None:
    if not config.cache.enabled:
        return None
    if config.cache.backend == "redis" and redis is not None:
        return RedisResponseCache(redis, config.redis_prefix, config.cache.ttl_s)
    return MemoryResponseCache(config.cache.ttl_s, config.cache.max_entries)
