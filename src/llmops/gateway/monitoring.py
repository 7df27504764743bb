"""The gateway's monitoring: a ``Monitor`` fed by answered requests, with drift references per deployment.

``GatewayMonitor`` builds the monitor on the gateway's Prometheus registry and store. Drift is
measured per model version, against a reference set per deployment: from the config
(``monitor.drift_references``: deployment -> dataset version) or through the admin API. A
deployment's reference applies to every model version it serves, including versions that appear
later (a new canary arm). References are stored (``drift_references``), so other workers pick them
up within ``reference_sync_s`` and a restart keeps them. At start-up a configured reference is
stored again only if the stored one differs (the same dataset version gives the same profile), so
the config wins at start and the admin API until the next start. ``observe`` is called once per
answered request, on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CollectorRegistry

from llmops.data.versions import DatasetStore
from llmops.errors import InvalidInput, LLMOpsError
from llmops.gateway.config import GatewayMonitorConfig
from llmops.gateway.deployments import Deployment, DeploymentTable
from llmops.monitor.alert_rules import load_alert_rules
from llmops.monitor.drift_features import DriftProfile
from llmops.monitor.drift_sources import load_profile, save_profile
from llmops.monitor.drift_store import StoredReference, load_references, profile_from_dataset, save_reference
from llmops.monitor.service import Monitor
from llmops.security.payload_protection import PayloadProtection
from llmops.store.home import Home

log = logging.getLogger(__name__)


def versions_of(deployment: Deployment) -> list[str]:
    """The model versions a deployment serves (its arms and its shadow)."""
    arms = deployment.arms + ([deployment.shadow] if deployment.shadow is not None else [])
    return sorted({arm.model_version for arm in arms})


class GatewayMonitor:
    """The monitor of one gateway worker and the drift references of its deployments."""

    def __init__(
        self,
        config: GatewayMonitorConfig,
        home: Home,
        table: DeploymentTable,
        registry: CollectorRegistry,
        *,
        protection: PayloadProtection | None = None,
    ) -> None:
        if config.alert_rules_file is not None:
            config = config.model_copy(update={"alert_rules": load_alert_rules(config.alert_rules_file)})
        self.config = config
        self.home = home
        self.table = table
        self.monitor = Monitor(config, registry, store=home.store, protection=protection)
        self._by_deployment: dict[str, StoredReference] = {}
        self._applied: dict[str, str] = {}  # model version -> digest of the reference it is tracked with
        self._profiles: dict[str, DriftProfile] = {}  # digest -> profile
        self._sync: asyncio.Task[None] | None = None

    # ---- the request path ----
    def observe(
        self,
        *,
        request_id: str,
        deployment: str,
        model_version: str,
        prompt: str,
        completion: str | None,
        key_id: str | None,
    ) -> None:
        """Feed one answered request (cheap; scoring and checks run in the background)."""
        if not self.monitor.drift.tracks(model_version):
            reference = self._by_deployment.get(deployment)
            if reference is not None and reference.digest in self._profiles:
                self._track(model_version, reference.digest)
        self.monitor.on_response(
            request_id=request_id,
            model_version=model_version,
            prompt=prompt,
            completion=completion or "",
            key_id=key_id,
        )

    # ---- references ----
    async def set_reference(
        self, deployment: Deployment, dataset: str, *, actor: str, reason: str | None = None
    ) -> list[StoredReference]:
        """Make ``dataset``'s prompts the drift reference of every version ``deployment`` serves."""
        datasets = DatasetStore.from_home(self.home)
        profile = await asyncio.to_thread(profile_from_dataset, datasets, dataset, self.config.drift)
        stored = await asyncio.to_thread(self._save, deployment, profile, actor, reason)
        self._apply(stored)
        return stored

    def _save(
        self, deployment: Deployment, profile: DriftProfile, actor: str, reason: str | None
    ) -> list[StoredReference]:
        stored = [
            save_reference(
                self.home.store,
                self.home.artifacts,
                version,
                profile,
                deployment=deployment.name,
                actor=actor,
                reason=reason,
            )
            for version in versions_of(deployment)
        ]
        self._profiles[stored[0].digest] = profile
        return stored

    def _save_configured(self) -> None:
        """Store the config's references whose profile differs from the stored one (blocking)."""
        current = {ref.model_version: ref.digest for ref in load_references(self.home.store)}
        datasets = DatasetStore.from_home(self.home)
        for name, dataset in self.config.drift_references.items():
            deployment = self.table.get(name)
            try:
                profile = profile_from_dataset(datasets, dataset, self.config.drift)
            except LLMOpsError as exc:
                raise InvalidInput(
                    f"monitor.drift_references.{name}: {exc.message}",
                    param=f"monitor.drift_references.{name}",
                ) from exc
            digest = save_profile(self.home.artifacts, profile)
            if any(current.get(version) != digest for version in versions_of(deployment)):
                self._save(deployment, profile, "gateway config", "monitor.drift_references")

    def _load_references(self) -> list[StoredReference]:
        """Every stored reference, with its profile cached (blocking: run in a thread)."""
        references = load_references(self.home.store)
        for reference in references:
            if reference.digest not in self._profiles:
                self._profiles[reference.digest] = load_profile(self.home.artifacts, reference.digest)
        return references

    def _apply(self, references: list[StoredReference]) -> None:
        """Track each version with its reference where it changed (on the event loop)."""
        for reference in references:
            if reference.deployment is not None:
                known = self._by_deployment.get(reference.deployment)
                if known is None or known.created_at <= reference.created_at:
                    self._by_deployment[reference.deployment] = reference
            if self._applied.get(reference.model_version) != reference.digest:
                self._track(reference.model_version, reference.digest)

    def _track(self, model_version: str, digest: str) -> None:
        self.monitor.drift.set_reference(model_version, self._profiles[digest])
        self._applied[model_version] = digest

    # ---- lifecycle ----
    async def start(self) -> None:
        await asyncio.to_thread(self._save_configured)  # a bad reference in the config stops start-up
        self._apply(await asyncio.to_thread(self._load_references))
        await self.monitor.start()
        self._sync = asyncio.get_running_loop().create_task(self._sync_references())

    async def stop(self) -> None:
        if self._sync is not None:
            self._sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync
            self._sync = None
        await self.monitor.stop()

    async def _sync_references(self) -> None:
        while True:
            await asyncio.sleep(self.config.reference_sync_s)
            try:
                self._apply(await asyncio.to_thread(self._load_references))
            except Exception:  # the next round retries
                log.exception("drift references could not be refreshed")
