"""The ``targets:`` section of ``deployment.yaml``: what only a cluster target needs (an image, a
namespace, the names of Secrets) beside the rest of the one deployment spec.

The local target ignores this section; the Ray target's defaults suit a cluster on this machine.
A cluster target refuses a spec whose section it needs is missing, naming the field
(``targets.kubernetes.image``) and the fix. Only *names* of Secrets appear here, never a secret
value: manifests reference them (``secretKeyRef``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

K8S_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecretKeys(_Strict):
    """Keys of the Secret ``secret_name`` (values stay in the cluster, never in a manifest)."""

    server_secret: str = Field("secret", description="Key holding the server secret (LLMOPS_SECRET).")
    database_url: str = Field("database-url", description="Key holding the PostgreSQL URL.")
    redis_url: str | None = Field(
        "redis-url", description="Key holding the Redis URL (optional in the Secret); null: no Redis."
    )


class KubernetesGateway(_Strict):
    """The gateway Deployment in front of the replicas."""

    replicas: int = Field(2, ge=1, description="Gateway pods.")
    min_available: int = Field(1, ge=0, description="PodDisruptionBudget: gateway pods kept during drains.")
    cpu: str = Field("500m", description="CPU request (and limit) of a gateway pod.")
    memory_mb: int = Field(512, ge=64, description="Memory request (and limit) of a gateway pod, MiB.")
    port: int = Field(4000, ge=1, le=65535, description="Port the gateway listens on.")


class KubernetesAutoscaling(_Strict):
    """Scaling a replica Deployment between replicas.min and replicas.max on the engine's load."""

    queue_per_replica: float = Field(
        4.0, gt=0, description="Target requests waiting in the engine per replica (scale out above it)."
    )
    running_per_replica: float = Field(
        8.0, gt=0, description="Target requests in the running batch per replica."
    )
    polling_s: int = Field(15, ge=1, description="KEDA: how often the Prometheus queries run.")
    cooldown_s: int = Field(300, ge=0, description="Scale-down stabilisation (HPA) / cooldown (KEDA).")
    prometheus_url: str = Field(
        "http://prometheus-operated.monitoring.svc:9090",
        description="Prometheus KEDA queries (it scrapes the replicas through the ServiceMonitor).",
    )
    prometheus_namespace: str = Field(
        "monitoring", description="Namespace of Prometheus; the NetworkPolicy lets it scrape replicas."
    )


class KubernetesSettings(_Strict):
    """How a deployment runs on Kubernetes (``llmops deploy render --target kubernetes``)."""

    namespace: str = Field("llmops", pattern=K8S_NAME, description="Namespace of every object.")
    image: str = Field(
        description="The llmops image with a version tag or digest, e.g. registry.example/llmops:0.1.0."
    )
    image_pull_policy: str = Field("IfNotPresent", description="IfNotPresent, Always or Never.")
    secret_name: str = Field(
        pattern=K8S_NAME,
        description="Secret holding the server secret and database URL (created outside llmops).",
    )
    secret_keys: SecretKeys = Field(default_factory=SecretKeys)
    artifacts_claim: str = Field(
        pattern=K8S_NAME,
        description="PersistentVolumeClaim with the artifact store, mounted read-only in replicas.",
    )
    replica_port: int = Field(8000, ge=1, le=65535, description="Port replicas listen on.")
    memory_mb: int | None = Field(
        None, ge=64, description="Memory limit of a replica pod, MiB; default resources.memory_limit_mb."
    )
    gateway: KubernetesGateway = Field(default_factory=KubernetesGateway)
    autoscaling: KubernetesAutoscaling = Field(default_factory=KubernetesAutoscaling)

    @field_validator("image")
    @classmethod
    def _pinned_image(cls, image: str) -> str:
        name, _, tag = image.rpartition(":")
        if "@sha256:" in image:
            return image
        if not name or "/" in tag or tag == "latest":
            raise ValueError("give the image a version tag or digest (llmops:0.1.0); never latest")
        return image

    @field_validator("image_pull_policy")
    @classmethod
    def _policy(cls, policy: str) -> str:
        if policy not in ("IfNotPresent", "Always", "Never"):
            raise ValueError("use IfNotPresent, Always or Never")
        return policy


class RayAutoscaling(_Strict):
    """Ray Serve's autoscaling of a version's replicas between replicas.min and replicas.max."""

    target_ongoing_requests: float = Field(
        2.0, gt=0, description="Requests in flight per replica Serve aims for (scale out above it)."
    )
    max_ongoing_requests: int = Field(
        32,
        ge=1,
        description="Most requests one replica holds at once; more wait in Serve's router. The "
        "gateway's health probes queue there too: keep it above the requests the gateway sends at once.",
    )
    upscale_delay_s: float = Field(30.0, ge=0, description="Load must stay high this long to add replicas.")
    downscale_delay_s: float = Field(
        600.0, ge=0, description="Load must stay low this long to remove replicas."
    )
    metrics_interval_s: float = Field(10.0, gt=0, description="How often replicas report their load.")
    look_back_period_s: float = Field(30.0, gt=0, description="Window over which load is averaged.")


class RaySettings(_Strict):
    """How a deployment runs on Ray Serve (``llmops deploy apply --target ray``)."""

    address: str = Field(
        "auto",
        description="Ray cluster: auto (the one started on this machine with `ray start --head`, or "
        "RAY_ADDRESS), ray://HOST:10001 (Ray Client) or HOST:PORT (its GCS).",
    )
    http_host: str = Field("127.0.0.1", description="Interface Serve's HTTP proxy listens on.")
    http_port: int = Field(8000, ge=1, le=65535, description="Port of Serve's HTTP proxy.")
    proxy_url: str | None = Field(
        None,
        description="Base URL the gateway calls to reach Serve's proxy; default http://http_host:http_port.",
    )
    store_env: bool = Field(
        True,
        description="Give replicas this machine's LLMOPS_HOME and database URL (a cluster on this "
        "machine); false where the worker nodes' own environment names the store.",
    )
    autoscaling: RayAutoscaling = Field(default_factory=RayAutoscaling)

    @field_validator("address")
    @classmethod
    def _address(cls, address: str) -> str:
        if address != "auto" and not address.startswith("ray://") and ":" not in address:
            raise ValueError("use auto, ray://HOST:PORT or HOST:PORT")
        return address

    def served_url(self) -> str:
        """Where the gateway reaches Serve's HTTP proxy."""
        return (self.proxy_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")


class TargetSettings(_Strict):
    """Settings of the cluster targets; each section only matters to its target."""

    kubernetes: KubernetesSettings | None = Field(
        None, description="The Kubernetes target (image, namespace, Secret and volume names)."
    )
    ray: RaySettings = Field(
        default_factory=RaySettings,
        description="The Ray Serve target (cluster address, Serve's HTTP proxy, autoscaling).",
    )
