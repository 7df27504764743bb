"""``deployment.yaml``: one strict, self-documenting model of a deployment (``DeploymentSpec``).

A deployment names a registry reference (``support-bot@production``), how it is served (the in-process
``transformers`` engine, a supervised ``vllm`` server, or any OpenAI-compatible URL), how many
replicas run and with what resources, how they are probed, its SLOs, its rollout policy and what the
gateway needs to front it (price, limits, guardrails). ``gateway_deployment`` turns the spec into the
gateway's ``DeploymentConfig``. Unknown fields and bad values are refused with the field's path and a
fix (``load_spec``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    ValidationError,
    field_serializer,
    model_validator,
)

from llmops.deploy.autoscale import AutoscalePolicy
from llmops.deploy.policy import SLO, RolloutPolicy
from llmops.deploy.target_settings import TargetSettings
from llmops.engine.config import EngineConfig
from llmops.errors import InvalidInput, did_you_mean
from llmops.gateway.config import (
    ArmConfig,
    DeploymentConfig,
    DeploymentGuardrails,
    PriceConfig,
    TimeoutConfig,
    UpstreamConfig,
)
from llmops.security.yaml_input import read_yaml_file

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TransformersBackend(_Strict):
    """The in-process engine (``llmops replica``): one process per replica."""

    kind: Literal["transformers"] = Field(description="The in-process transformers engine.")
    engine: EngineConfig = Field(
        default_factory=EngineConfig,
        description="Engine settings (KV cache, batching, queues); its threads come from resources.threads.",
    )
    max_n: int = Field(8, ge=1, le=128, description="Most choices (`n`) one request may ask for.")
    request_timeout_s: float | None = Field(
        None, gt=0, description="Generation deadline per request; past it the engine aborts it."
    )

    @model_validator(mode="after")
    def _threads_in_resources(self) -> TransformersBackend:
        if "threads" in self.engine.model_fields_set:
            raise ValueError("engine.threads: set the threads under resources.threads instead")
        return self

    @property
    def gpus_needed(self) -> int:
        """GPUs a replica must see for ``engine.device``: N + 1 for cuda:N, none for auto and cpu."""
        device = self.engine.device
        if not device.startswith("cuda"):
            return 0
        return int(device.partition(":")[2] or 0) + 1

    @field_serializer("engine")
    def _engine_without_threads(self, engine: EngineConfig, info: SerializationInfo) -> dict[str, Any]:
        # threads belong to resources.threads: a dump never carries them, so it validates again
        return engine.model_dump(mode=info.mode, exclude={"threads"}, exclude_unset=info.exclude_unset)


class VLLMBackend(_Strict):
    """vLLM's OpenAI server, run from its own Python environment, one process per replica."""

    kind: Literal["vllm"] = Field(description="A supervised vLLM OpenAI server.")
    python: Path = Field(description="Python interpreter of the environment where vLLM is installed.")
    max_model_len: int | None = Field(None, ge=1, description="vLLM --max-model-len, if set.")
    cpu_kv_cache_space_gb: int | None = Field(
        None, ge=1, description="VLLM_CPU_KVCACHE_SPACE for vLLM's CPU build (GiB of KV cache)."
    )
    extra_args: list[str] = Field(default_factory=list, description="More vLLM command-line arguments.")


class OpenAIBackend(_Strict):
    """Replicas that already run elsewhere (any OpenAI-compatible server): registered, not started."""

    kind: Literal["openai"] = Field(description="Existing OpenAI-compatible servers.")
    urls: list[str] = Field(min_length=1, description="Base URLs of the servers, one per replica.")
    served_model: str | None = Field(
        None, description="The model name those servers expect; default the deployment's name."
    )


Backend = Annotated[TransformersBackend | VLLMBackend | OpenAIBackend, Field(discriminator="kind")]


class Replicas(_Strict):
    """How many replicas run; ``scale`` and autoscaling stay within ``min``..``max``."""

    count: int = Field(1, ge=0, description="Replicas to run now.")
    min: int = Field(1, ge=0, description="Fewest replicas scaling may leave.")
    max: int = Field(4, ge=1, description="Most replicas scaling may start.")

    @model_validator(mode="after")
    def _within_bounds(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        if not self.min <= self.count <= self.max:
            raise ValueError(f"count ({self.count}) must lie between min ({self.min}) and max ({self.max})")
        return self


class Resources(_Strict):
    """What one replica may use."""

    threads: int = Field(1, ge=1, le=256, description="torch threads (and OMP_NUM_THREADS) of a replica.")
    memory_limit_mb: int | None = Field(
        None,
        ge=64,
        description="Resident memory a replica may hold; above it the supervisor restarts the replica "
        "(as an out-of-memory kill). Unset: no limit.",
    )
    gpus: int = Field(
        0, ge=0, le=16, description="GPUs one replica needs (cluster targets); the local target ignores it."
    )


class Network(_Strict):
    """Where replicas listen."""

    host: str = Field("127.0.0.1", description="Interface replicas listen on (and the gateway calls).")
    base_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Replica i listens on base_port + i; unset: a free port is picked per replica.",
    )


class Readiness(_Strict):
    """When a started replica may receive traffic."""

    path: str = Field("/readyz", description="Path that answers 200 once the replica can serve.")
    timeout_s: float = Field(180.0, gt=0, description="A replica not ready by then failed to start.")
    interval_s: float = Field(0.5, gt=0, description="How often readiness is probed while starting.")


class Liveness(_Strict):
    """How the supervisor notices a replica that is up but no longer answering."""

    path: str = Field("/healthz", description="Path that answers 200 while the process is alive.")
    interval_s: float = Field(2.0, gt=0, description="How often every replica is probed.")
    timeout_s: float = Field(2.0, gt=0, description="A probe not answered within this failed.")
    failure_threshold: int = Field(3, ge=1, description="Consecutive failed probes that restart a replica.")


class RestartPolicy(_Strict):
    """Restarts of a crashed replica: exponential backoff, and a crash loop reported, not spun."""

    backoff_initial_s: float = Field(1.0, gt=0, description="First restart delay; doubles per failure.")
    backoff_max_s: float = Field(60.0, gt=0, description="Longest restart delay.")
    max_restarts: int = Field(
        5, ge=0, description="Consecutive failed starts before the replica is reported as crash_loop."
    )
    stable_after_s: float = Field(
        60.0, gt=0, description="A replica up this long has recovered: its failure count resets."
    )


class Drain(_Strict):
    """Stopping a replica: it leaves the gateway first, then in-flight requests finish."""

    grace_s: float = Field(30.0, ge=0, description="How long in-flight requests may take to finish.")
    deregister_wait_s: float = Field(
        5.0,
        ge=0,
        description="After deregistering, how long until every gateway worker stops choosing the replica "
        "(the gateway's admin_sync_s).",
    )


class GatewaySettings(_Strict):
    """What the gateway needs to front this deployment (the rest of ``DeploymentConfig``)."""

    url: str | None = Field(
        None, description="Admin base URL of the running gateway; default --gateway / LLMOPS_GATEWAY_URL."
    )
    price: PriceConfig = Field(description="What a request costs (required; free: true to waive).")
    rpm: int | None = Field(None, ge=0, description="Requests per minute over all keys.")
    tpm: int | None = Field(None, ge=0, description="Tokens per minute over all keys.")
    timeouts: TimeoutConfig = Field(default_factory=TimeoutConfig)
    max_retries: int = Field(1, ge=0, description="Other replicas to try before the first byte.")
    prefix_affinity: bool = Field(False, description="Send equal prompt prefixes to the same replica.")
    max_output_tokens: int = Field(
        4096, gt=0, description="Completion tokens assumed when a request sets no max_tokens."
    )
    fallbacks: list[str] = Field(default_factory=list, description="Deployments to try when all fail.")
    guardrails: DeploymentGuardrails | None = Field(None, description="Input and output guardrails.")


class DeploymentSpec(_Strict):
    """One deployment: what ``llmops deploy apply deployment.yaml`` makes true."""

    name: str = Field(
        pattern=NAME_PATTERN,
        description="What clients pass as `model` (lower-case letters, digits and dashes).",
    )
    model: str = Field(description="Registry reference served, e.g. support-bot@production.")
    backend: Backend = Field(
        default_factory=lambda: TransformersBackend(kind="transformers"),
        description="How replicas serve the model: kind transformers, vllm or openai.",
    )
    replicas: Replicas = Field(default_factory=Replicas)
    autoscaling: AutoscalePolicy | None = Field(
        None,
        description="Scale the stable replicas within replicas.min..max on their load (the local "
        "supervisor); unset: replicas stay at count.",
    )
    resources: Resources = Field(default_factory=Resources)
    network: Network = Field(default_factory=Network)
    readiness: Readiness = Field(default_factory=Readiness)
    liveness: Liveness = Field(default_factory=Liveness)
    restart: RestartPolicy = Field(default_factory=RestartPolicy)
    drain: Drain = Field(default_factory=Drain)
    slo: SLO = Field(default_factory=SLO, description="Service-level objectives (rollout analysis).")
    rollout: RolloutPolicy = Field(default_factory=RolloutPolicy, description="How new versions roll out.")
    gateway: GatewaySettings = Field(description="How the gateway fronts the deployment.")
    targets: TargetSettings = Field(
        default_factory=TargetSettings, description="What cluster targets need (kubernetes: image, ...)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentSpec:
        if "@" not in self.model and not re.fullmatch(r"[\w.-]+", self.model):
            raise ValueError("model: give a registry reference such as support-bot@production")
        if self.network.base_port is not None and self.network.base_port + self.replicas.max > 65536:
            raise ValueError("network.base_port: too high for replicas.max ports; lower it")
        if isinstance(self.backend, OpenAIBackend) and len(self.backend.urls) < self.replicas.count:
            raise ValueError("replicas.count: an openai backend runs one replica per URL; add urls")
        if isinstance(self.backend, TransformersBackend):
            self._gpus_fit_the_device(self.backend)
        return self

    def _gpus_fit_the_device(self, backend: TransformersBackend) -> None:
        device, gpus = backend.engine.device, self.resources.gpus
        if device == "cpu" and gpus:
            raise ValueError(
                f"resources.gpus: {gpus} GPU(s) per replica, but backend.engine.device is cpu; "
                "set device to cuda (or auto), or resources.gpus to 0"
            )
        if gpus and backend.gpus_needed > gpus:
            raise ValueError(
                f"backend.engine.device: {device} needs {backend.gpus_needed} GPUs per replica but "
                f"resources.gpus is {gpus}; a replica sees only its own GPUs (cuda:0 .. cuda:{gpus - 1})"
            )

    @property
    def gpus_per_replica(self) -> int:
        """GPUs a cluster target requests per replica: resources.gpus, or what a cuda engine device
        needs when resources.gpus is unset (auto and cpu request none)."""
        if isinstance(self.backend, TransformersBackend):
            return max(self.resources.gpus, self.backend.gpus_needed)
        return self.resources.gpus

    @property
    def served_model(self) -> str:
        """The model name replicas answer to."""
        if isinstance(self.backend, OpenAIBackend) and self.backend.served_model:
            return self.backend.served_model
        return self.name

    def gateway_deployment(self, arms: list[ArmConfig] | None = None) -> DeploymentConfig:
        """The gateway's ``DeploymentConfig``: by default one ``stable`` arm on ``model`` (replicas are
        registered separately, as they become ready)."""
        g = self.gateway
        return DeploymentConfig(
            name=self.name,
            arms=arms or [ArmConfig(name="stable", model=self.model, upstream_model=self.served_model)],
            fallbacks=g.fallbacks,
            rpm=g.rpm,
            tpm=g.tpm,
            price=g.price,
            timeouts=g.timeouts,
            max_retries=g.max_retries,
            prefix_affinity=g.prefix_affinity,
            max_output_tokens=g.max_output_tokens,
            health_path=self.readiness.path,
            guardrails=g.guardrails,
        )


def arm_config(spec: DeploymentSpec, track: str, model: str, weight: float, urls: list[str]) -> ArmConfig:
    """An arm of ``spec``'s deployment serving ``model`` on ``urls`` (used by targets and rollouts)."""
    return ArmConfig(
        name=track,
        model=model,
        weight=weight,
        upstream_model=spec.served_model,
        upstreams=[UpstreamConfig(url=url) for url in urls],
    )


# -- loading, with errors that name the field and the fix ---------------------------------------


def _path(loc: tuple[Any, ...]) -> str:
    """``("backend", "transformers", "engine", "x")`` → ``backend.engine.x`` (the union tag dropped)."""
    text = ""
    for index, part in enumerate(loc):
        if index and loc[index - 1] == "backend" and part in ("transformers", "vllm", "openai"):
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The field names allowed where an unknown field ``loc`` was found (for a did-you-mean)."""
    model: Any = DeploymentSpec
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            return []
        if part in ("transformers", "vllm", "openai"):
            model = {"transformers": TransformersBackend, "vllm": VLLMBackend, "openai": OpenAIBackend}[part]
            continue
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if model is None:
            # an optional sub-model (X | None): find the BaseModel member
            for arg in getattr(annotation, "__args__", ()):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    model = arg
    return list(model.model_fields) if model is not None else []


def spec_error(source: str, exc: ValidationError) -> InvalidInput:
    """The first problem as ``SOURCE: field 'a.b': what is wrong and the fix``."""
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    field = _path(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        fix = "unknown field; remove it or fix its spelling." + did_you_mean(str(loc[-1]), _fields_at(loc))
    elif error["type"] == "missing":
        fix = "field required; add it (see docs/deployment.md)"
    elif error["type"] == "union_tag_invalid" or error["type"] == "union_tag_not_found":
        fix = "set kind to transformers, vllm or openai"
    else:
        fix = str(error["msg"]).removeprefix("Value error, ")
    more = exc.error_count() - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return InvalidInput(f"{source}: field '{field}': {fix}{suffix}", param=field, code="invalid_spec")


def parse_spec(raw: Any, *, source: str = "deployment spec") -> DeploymentSpec:
    """Validate a decoded YAML/JSON object into a ``DeploymentSpec``."""
    if not isinstance(raw, dict):
        raise InvalidInput(
            f"{source}: a deployment spec must be a mapping of fields (name, model, gateway, ...)",
            param="spec",
        )
    try:
        return DeploymentSpec.model_validate(raw)
    except ValidationError as exc:
        raise spec_error(source, exc) from None


def load_spec(path: str | Path) -> DeploymentSpec:
    """Read ``deployment.yaml``; errors name the file, the field and the fix."""
    raw = read_yaml_file(path, what="deployment spec", param="spec")
    return parse_spec(raw, source=str(path))
