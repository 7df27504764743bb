"""Where drift prompts come from: dataset rows, the gateway's request log, stored profiles.

A reference is built from a dataset version's rows or from a past window of logged prompts; the
current window from recent logged prompts. Prompts are taken the way the gateway logs them (the
text of every message, joined by newlines), so a dataset-built reference and logged traffic
measure the same thing. Profiles are stored as content-addressed artifacts (JSON).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select

from llmops.errors import InvalidInput
from llmops.monitor.drift_features import DriftProfile
from llmops.security.payload_crypto import HIDDEN, PayloadCipher, revealer
from llmops.store.artifacts import ArtifactStore
from llmops.store.database import Store
from llmops.store.schema import GatewayRequest


def prompt_of_row(row: Mapping[str, Any]) -> str | None:
    """The prompt of a ``prompt_completion``, ``chat`` or ``text`` row, as the gateway would log it."""
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        return prompt
    messages = row.get("messages")
    if isinstance(messages, list) and messages:
        turns = list(messages)
        while turns and isinstance(turns[-1], Mapping) and turns[-1].get("role") == "assistant":
            turns.pop()  # the answer being learned is not part of the prompt
        parts = [m.get("content") for m in turns if isinstance(m, Mapping)]
        return "\n".join(part for part in parts if isinstance(part, str)) or None
    text = row.get("text")
    return text if isinstance(text, str) else None


def prompts_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The prompts of dataset rows (rows without one are skipped)."""
    prompts = [prompt_of_row(row) for row in rows]
    return [prompt for prompt in prompts if prompt]


def logged_prompts(
    store: Store,
    *,
    model_version: str,
    since: datetime,
    until: datetime | None = None,
    limit: int = 5000,
) -> list[str]:
    """Prompts the gateway logged for ``model_version`` in ``[since, until)``, newest ``limit``, oldest first.

    Shadow (mirrored) requests and requests logged without their text are left out.
    """
    if limit < 1:
        raise InvalidInput("limit must be at least 1", param="limit")
    query = (
        select(GatewayRequest.prompt)
        .where(GatewayRequest.model_version == model_version)
        .where(GatewayRequest.ts >= since)
        .where(GatewayRequest.prompt.is_not(None))
        .where(GatewayRequest.shadow_of.is_(None))
        .order_by(GatewayRequest.ts.desc())
        .limit(limit)
    )
    if until is not None:
        query = query.where(GatewayRequest.ts < until)
    reveal = revealer(PayloadCipher.from_settings())  # payloads may be encrypted at rest
    with store.read() as session:
        prompts = [reveal(prompt) for prompt in session.execute(query).scalars() if prompt]
    found = [prompt for prompt in prompts if prompt and prompt != HIDDEN]
    found.reverse()
    return found


def save_profile(artifacts: ArtifactStore, profile: DriftProfile) -> str:
    """Store ``profile`` as a JSON artifact; returns its sha256 digest."""
    return artifacts.put_bytes(profile.to_json().encode())


def load_profile(artifacts: ArtifactStore, digest: str) -> DriftProfile:
    """The profile stored under ``digest``."""
    return DriftProfile.from_json(artifacts.read_bytes(digest))
