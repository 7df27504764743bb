"""The gateway's configuration: pydantic models over YAML (``extra="forbid"``), one per concern.

The CLI's flags and ``gateway.yaml`` build the same ``GatewayConfig``. A deployment is what a
request's ``model`` names; it has one or more arms (model versions, each with replicas and a
traffic weight), an optional shadow arm, fallbacks, limits and a price that is never silently zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.json_schema import JsonDict

from llmops.errors import InvalidInput, invalid_config
from llmops.monitor.service import MonitorConfig
from llmops.security.guardrails import GuardrailConfig
from llmops.security.yaml_input import load_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# what _never_silently_zero enforces: free, or some rate above 0
_SOME_PRICE: JsonDict = {
    "anyOf": [
        {"required": ["free"], "properties": {"free": {"const": True}}},
        {
            "required": ["input_usd_per_1k_tokens"],
            "properties": {"input_usd_per_1k_tokens": {"exclusiveMinimum": 0}},
        },
        {
            "required": ["output_usd_per_1k_tokens"],
            "properties": {"output_usd_per_1k_tokens": {"exclusiveMinimum": 0}},
        },
        {
            "required": ["usd_per_engine_second"],
            "properties": {"usd_per_engine_second": {"exclusiveMinimum": 0}},
        },
    ]
}


class PriceConfig(_Strict):
    """What a request costs. Self-hosted models are priced by engine seconds times a rate."""

    model_config = ConfigDict(json_schema_extra=_SOME_PRICE)

    input_usd_per_1k_tokens: float = Field(0.0, ge=0, description="USD per 1,000 prompt tokens.")
    output_usd_per_1k_tokens: float = Field(0.0, ge=0, description="USD per 1,000 completion tokens.")
    usd_per_engine_second: float = Field(
        0.0,
        ge=0,
        description="USD per second of engine time (replica header x-engine-seconds, else measured).",
    )
    free: bool = Field(False, description="Set to true to serve this deployment at no cost, on purpose.")

    @model_validator(mode="after")
    def _never_silently_zero(self) -> PriceConfig:
        rates = (self.input_usd_per_1k_tokens, self.output_usd_per_1k_tokens, self.usd_per_engine_second)
        if not self.free and not any(rates):
            raise ValueError(
                "a deployment needs a price: set input/output_usd_per_1k_tokens or usd_per_engine_second, "
                "or free: true to serve it at no cost on purpose"
            )
        return self


class TimeoutConfig(_Strict):
    """How long the gateway waits for a replica (before the first byte, a timeout tries another)."""

    connect_s: float = Field(2.0, gt=0, description="Connecting to a replica.")
    first_token_s: float = Field(30.0, gt=0, description="From sending the request to its first byte.")
    total_s: float = Field(300.0, gt=0, description="The whole request, first byte to last.")


class UpstreamConfig(_Strict):
    """One replica of an arm."""

    url: str = Field(description="Base URL of an OpenAI-compatible replica, e.g. http://10.0.0.5:8000.")
    name: str | None = Field(None, description="Name in logs and metrics; default the URL.")


class ArmConfig(_Strict):
    """One model version of a deployment with its replicas and its share of traffic."""

    name: str = Field("primary", description="Arm name (e.g. stable, canary); recorded per request.")
    model: str | None = Field(
        None, description="Registry reference (support-bot@production); default DEPLOYMENT@production."
    )
    weight: float = Field(100.0, ge=0, description="Relative share of traffic.")
    upstream_model: str | None = Field(
        None, description="Model name the replicas serve; default the deployment's."
    )
    upstreams: list[UpstreamConfig] = Field(default_factory=list, description="Replicas of this arm.")


class ShadowConfig(_Strict):
    """A candidate that receives a copy of a sample of requests; its answers are logged, never returned."""

    arm: ArmConfig = Field(description="The candidate arm.")
    sample_rate: float = Field(0.1, ge=0, le=1, description="Fraction of requests mirrored.")


class DeploymentGuardrails(GuardrailConfig):
    """Guardrails of one deployment in the gateway (``guardrails:``): the checks of
    ``security.guardrails`` plus what the gateway does with them."""

    check_input: bool = Field(default=True, description="Check prompts before they are forwarded.")
    check_output: bool = Field(
        default=True,
        description="Check answers: non-streamed before they are returned, streamed at their end (the "
        "answer was already sent, so a failing check there is always recorded as a flag).",
    )
    refusal_message: str | None = Field(
        default=None,
        description="Message of the 400 error a blocked request gets; default names the rule and why.",
    )


class DeploymentConfig(_Strict):
    """What clients call by name: arms of model versions, replicas, limits, price and guardrails."""

    name: str = Field(description="What clients pass as `model`.")
    model: str | None = Field(None, description="Shorthand for one arm: its registry reference.")
    upstreams: list[UpstreamConfig] = Field(
        default_factory=list, description="Shorthand for one arm's replicas."
    )
    arms: list[ArmConfig] = Field(default_factory=list, description="Model versions and their traffic split.")
    shadow: ShadowConfig | None = Field(None, description="Mirror a sample of traffic to a candidate.")
    fallbacks: list[str] = Field(
        default_factory=list, description="Deployments to try when every replica fails."
    )
    rpm: int | None = Field(None, ge=0, description="Requests per minute over all keys.")
    tpm: int | None = Field(None, ge=0, description="Tokens per minute over all keys.")
    price: PriceConfig = Field(description="What a request costs (required; free: true to waive).")
    timeouts: TimeoutConfig = Field(
        default_factory=TimeoutConfig, description="How long to wait for a replica."
    )
    max_retries: int = Field(1, ge=0, description="Other replicas to try before the first byte.")
    prefix_affinity: bool = Field(False, description="Send equal prompt prefixes to the same replica.")
    affinity_prefix_chars: int = Field(256, gt=0, description="How much of the prompt the affinity hashes.")
    max_output_tokens: int = Field(
        4096,
        gt=0,
        description="Completion tokens assumed when a request sets no max_tokens (budget reservation).",
    )
    health_path: str = Field(
        "/readyz", description="Replica path probed by active health checks (serve's readiness probe)."
    )
    guardrails: DeploymentGuardrails | None = Field(
        None, description="Input and output guardrails of this deployment; unset: none."
    )

    @model_validator(mode="after")
    def _one_arm_at_least(self) -> DeploymentConfig:
        if self.arms and (self.upstreams or self.model):
            raise ValueError(f"deployment {self.name!r}: give either arms or model/upstreams, not both")
        if not self.arms:
            self.arms = [ArmConfig(name="primary", model=self.model, upstreams=self.upstreams)]
            self.upstreams, self.model = [], None
        if sum(arm.weight for arm in self.arms) <= 0:
            raise ValueError(f"deployment {self.name!r}: the arms' weights must add up to more than 0")
        return self


class LimitsConfig(_Strict):
    """Where the rate limits and budgets of keys and deployments are counted."""

    backend: Literal["memory", "redis"] = Field("memory", description="redis shares limits between workers.")
    fail_mode: Literal["open", "closed"] = Field(
        "open", description="Rate limits when Redis is down (budgets always fail closed)."
    )
    window_s: int = Field(60, gt=0, description="Sliding window of the per-minute limits.")


class CacheConfig(_Strict):
    """Answers of deterministic requests (temperature 0 or a fixed seed, not streamed), per key."""

    enabled: bool = Field(False, description="Cache answers of deterministic requests.")
    backend: Literal["memory", "redis"] = Field(
        "memory", description="memory: per worker; redis: shared by every worker (needs redis_url)."
    )
    ttl_s: float = Field(300.0, gt=0, description="How long an answer is reused.")
    max_entries: int = Field(10_000, gt=0, description="Entries kept by the in-memory cache.")


class RequestLogConfig(_Strict):
    """The request log: one row per request in the store, written in batches."""

    enabled: bool = Field(True, description="Record every request.")
    mode: Literal["relaxed", "strict"] = Field(
        "relaxed", description="strict: the row is committed before the response completes."
    )
    batch_size: int = Field(1000, gt=0, description="Rows per database transaction.")
    flush_interval_s: float = Field(0.2, gt=0, description="Longest a row waits in memory (relaxed mode).")
    queue_max: int = Field(10_000, gt=0, description="Rows held in memory before spilling to disk.")
    spill_dir: Path | None = Field(None, description="Folder of the spill files; default HOME/gateway-spill.")
    strict_timeout_s: float = Field(10.0, gt=0, description="How long a strict request waits for its row.")
    log_prompts: bool = Field(True, description="Store prompts and completions (false: counts only).")
    redact: Literal["off", "mask", "hash", "placeholder"] = Field(
        "off",
        description="Redact personal data in stored prompts and completions: mask (<EMAIL>), hash (keyed, "
        "joinable), placeholder (<EMAIL_1>; the mapping is not kept) or off.",
    )


class AuthConfig(_Strict):
    """How API keys are checked: each worker caches what the store says about a key."""

    key_cache_ttl_s: float = Field(5.0, ge=0, description="Revocations reach every worker within this.")
    negative_cache_ttl_s: float = Field(1.0, ge=0, description="How long an unknown key is remembered.")
    stale_if_error_s: float = Field(
        300.0,
        ge=0,
        description="While the key store is unreachable, a key read from it within this long keeps "
        "working with its last record (0: such requests get 503 at once).",
    )
    max_cached_keys: int = Field(100_000, gt=0, description="Keys a worker keeps in its cache.")


class HealthConfig(_Strict):
    """Active health checks: replicas that keep failing are ejected for a while."""

    interval_s: float = Field(5.0, gt=0, description="Active health checks of every replica.")
    failure_threshold: int = Field(3, gt=0, description="Consecutive failures that eject a replica.")
    cooldown_s: float = Field(10.0, gt=0, description="How long an ejected replica rests before a retry.")


class HttpLimitsConfig(_Strict):
    """Limits on what a client may send."""

    max_body_bytes: int = Field(1 << 20, gt=0, description="Larger request bodies get 413.")
    max_header_bytes: int = Field(16 << 10, gt=0, description="Larger request headers get 431.")
    max_in_flight: int = Field(
        512,
        gt=0,
        description="API requests (POST /v1/...) one worker serves at once; beyond it a request gets 503 "
        "with Retry-After at once instead of queueing until clients time out.",
    )


class GatewayMonitorConfig(MonitorConfig):
    """Monitoring in the gateway: drift, online evaluation, feedback and alerts (``monitor:``)."""

    enabled: bool = Field(True, description="Feed answered requests to the monitor and serve /v1/feedback.")
    alert_rules_file: Path | None = Field(
        None, description="YAML file of alert rules and webhooks (instead of inline alert_rules)."
    )
    drift_references: dict[str, str] = Field(
        default_factory=dict,
        description="Deployment -> dataset version (name@N) whose prompts are the drift reference.",
    )
    reference_sync_s: float = Field(
        5.0, gt=0, description="How often workers pick up drift references set through the admin API."
    )


class GatewayConfig(_Strict):
    """Every setting of ``gateway.yaml`` (docs/gateway.md)."""

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(4000, ge=0, le=65535, description="Port to listen on.")
    workers: int = Field(1, ge=1, description="Worker processes (use Redis for limits with more than one).")
    redis_url: str | None = Field(None, description="Redis for shared limits, budgets and cache.")
    redis_prefix: str = Field("llmops:gw:", description="Prefix of every Redis key the gateway writes.")
    allow_loopback_upstreams: bool = Field(False, description="Allow replicas on 127.0.0.1/localhost.")
    allow_private_upstreams: bool = Field(False, description="Allow replicas on private networks.")
    upstream_client: Literal["h1", "aiohttp", "httpx"] = Field(
        "h1",
        description="HTTP client for replicas: h1 (the gateway's own keep-alive HTTP/1.1 pool, the "
        "least CPU a request), aiohttp or httpx.",
    )
    admin_sync_s: float = Field(
        5.0,
        gt=0,
        description="How often workers apply deployment changes from the store (arms, replicas, splits "
        "made through the admin API) and re-resolve registry aliases (an alias move reaches every worker "
        "within this).",
    )
    deployments: list[DeploymentConfig] = Field(
        default_factory=list, description="What the gateway serves (more can be added by the admin API)."
    )
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="Rate limits and budgets.")
    cache: CacheConfig = Field(default_factory=CacheConfig, description="Response cache.")
    request_log: RequestLogConfig = Field(
        default_factory=RequestLogConfig, description="Request logging and its durability."
    )
    auth: AuthConfig = Field(default_factory=AuthConfig, description="API key checks.")
    health: HealthConfig = Field(default_factory=HealthConfig, description="Replica health checks.")
    http: HttpLimitsConfig = Field(default_factory=HttpLimitsConfig, description="Request size limits.")
    monitor: GatewayMonitorConfig = Field(
        default_factory=GatewayMonitorConfig, description="Drift, online evaluation, feedback, alerts."
    )
    metrics_multiprocess_dir: Path | None = Field(
        None,
        description="Folder of prometheus-client multiprocess files shared by the workers (with "
        "PROMETHEUS_MULTIPROC_DIR set to it); /metrics then aggregates every worker. Unset: per worker.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> GatewayConfig:
        names = [d.name for d in self.deployments]
        if len(set(names)) != len(names):
            raise ValueError("deployment names must be unique")
        for deployment in self.deployments:
            unknown = [f for f in deployment.fallbacks if f not in names or f == deployment.name]
            if unknown:
                raise ValueError(f"deployment {deployment.name!r}: unknown fallbacks {unknown}")
        unknown_refs = sorted(set(self.monitor.drift_references) - set(names))
        if unknown_refs:
            raise ValueError(f"monitor.drift_references names unknown deployments {unknown_refs}")
        if self.monitor.alert_rules_file is not None and self.monitor.alert_rules.rules:
            raise ValueError("monitor: give alert_rules or alert_rules_file, not both")
        needs_redis = self.limits.backend == "redis" or (self.cache.enabled and self.cache.backend == "redis")
        if needs_redis and not self.redis_url:
            raise ValueError("limits or cache use redis: set redis_url")
        return self

    @classmethod
    def from_yaml(cls, path: Path) -> GatewayConfig:
        try:
            data = load_yaml(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidInput(f"cannot read gateway config {path}: {exc}", param="config") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise invalid_config(f"gateway config {path}", exc.errors()) from None
