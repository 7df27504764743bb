"""Model references in monitoring mean what they mean in the registry: ``name``, ``name@N``, ``name@alias``.

The request log, drift references and reports, and online-evaluation scores record the version that
answered as the registry's canonical ``name@N``. A reference a user gives is resolved to that form
through the registry, so an alias or a bare name finds the same rows as the version number; an unknown
one is refused with the registry's message and its close-match suggestion. A model the registry does
not know but the request log does (a remote deployment, recorded as written) is accepted as written.
"""

from __future__ import annotations

from sqlalchemy import select

from llmops.errors import InvalidInput, NotFound
from llmops.registry.client import Registry
from llmops.store.artifacts import ArtifactStore
from llmops.store.database import Store
from llmops.store.schema import GatewayRequest


def _logged(store: Store, model_version: str) -> bool:
    query = select(GatewayRequest.id).where(GatewayRequest.model_version == model_version).limit(1)
    with store.read() as session:
        return session.execute(query).first() is not None


def resolve_model_version(store: Store, artifacts: ArtifactStore, ref: str, *, param: str = "version") -> str:
    """The canonical ``name@N`` of ``ref``; raises the registry's error (with ``param``) when unknown."""
    try:
        return Registry(store, artifacts).get(ref).ref
    except (NotFound, InvalidInput) as exc:
        if ref and _logged(store, ref):
            return ref
        exc.param = param
        raise
