"""Retention through `llmops privacy purge`: backdated request payloads, request rows and feedback
are blanked or deleted per data class; audit events are kept at least 180 days."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text
from tests.conftest import CliRunner

from llmops.security.payload_crypto import PREFIX, PayloadCipher
from llmops.settings import reset_settings
from llmops.store import audit
from llmops.store.home import Home
from llmops.store.schema import GatewayRequest, OnlineEvalResult, RequestFeedback, utcnow


def _seed(home: Home) -> None:
    now = utcnow()
    with home.store.transaction() as session:
        for name, age in (("fresh", 1), ("month", 40), ("old", 400)):
            session.add(
                GatewayRequest(
                    id=name,
                    ts=now - timedelta(days=age),
                    endpoint="chat",
                    stream=False,
                    prompt=f"prompt {name}",
                    completion=f"answer {name}",
                    prompt_tokens=1,
                    completion_tokens=1,
                    latency_ms=1.0,
                    status=200,
                    cost_usd=0.0,
                    cache_hit=False,
                )
            )
            session.add(
                RequestFeedback(
                    id=f"f-{name}", request_id=name, score=1.0, created_at=now - timedelta(days=age)
                )
            )
        session.add(
            OnlineEvalResult(request_id="old", metric="m", model_version="v", value=1.0, scored_at=now)
        )


def _state(home: Home) -> tuple[dict[str, str | None], list[str], int]:
    with home.store.read() as session:
        prompts = {r.id: r.prompt for r in session.execute(select(GatewayRequest)).scalars()}
        feedback = sorted(session.execute(select(RequestFeedback.id)).scalars())
        scores = len(list(session.execute(select(OnlineEvalResult)).scalars()))
    return prompts, feedback, scores


def test_purge_enforces_retention_per_data_class(
    home: Home, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(home)
    monkeypatch.setenv("LLMOPS_RETENTION_REQUEST_PAYLOADS_DAYS", "30")
    monkeypatch.setenv("LLMOPS_RETENTION_REQUEST_METADATA_DAYS", "365")
    monkeypatch.setenv("LLMOPS_RETENTION_FEEDBACK_DAYS", "90")
    monkeypatch.setenv("LLMOPS_RETENTION_AUDIT_DAYS", "180")
    reset_settings()

    dry = cli("privacy", "purge", "--dry-run")
    assert dry.code == 0, dry.err
    assert "would purge: request payloads 2, request rows 1, feedback 1" in dry.out
    assert _state(home)[0]["old"] == "prompt old"  # a dry run changes nothing

    done = cli("privacy", "purge")
    assert done.code == 0, done.err
    prompts, feedback, scores = _state(home)
    assert prompts == {"fresh": "prompt fresh", "month": None}
    assert feedback == ["f-fresh", "f-month"] and scores == 0
    with home.store.read() as session:
        events = [e for e in audit.iter_events(session) if e.action == "privacy.purge"]
        assert len(events) == 1 and events[0].after is not None
        assert audit.verify(session).ok
    again = cli("privacy", "purge")
    assert "purged: request payloads 0, request rows 0, feedback 0" in again.out


def test_audit_retention_under_180_days_is_refused(
    home: Home, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMOPS_RETENTION_AUDIT_DAYS", "30")
    reset_settings()
    refused = cli("privacy", "purge")
    assert refused.code != 0
    assert "audit events must be at least 180 days" in refused.out + refused.err


def test_rotate_keys_reencrypts_stored_payloads(
    home: Home, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(home)
    old, new = Fernet.generate_key(), Fernet.generate_key()
    with home.store.transaction() as session:
        row = session.get(GatewayRequest, "fresh")
        assert row is not None
        row.prompt = PayloadCipher([old]).encrypt("secret prompt")
        rated = session.get(RequestFeedback, "f-fresh")
        assert rated is not None
        rated.corrected_output = PayloadCipher([old]).encrypt("secret correction")
    monkeypatch.setenv("LLMOPS_PAYLOAD_KEYS", f"{new.decode()},{old.decode()}")
    reset_settings()
    rotated = cli("privacy", "rotate-keys")
    assert rotated.code == 0, rotated.err
    assert "re-encrypted 3 request-log rows and 1 feedback rows" in rotated.out
    with home.store.engine.connect() as conn:
        stored = conn.execute(text("SELECT prompt, completion FROM gateway_requests WHERE id='fresh'")).one()
        feedback = conn.execute(text("SELECT corrected_output FROM feedback WHERE id='f-fresh'")).scalar_one()
    assert all(value.startswith(PREFIX) for value in stored)
    assert PayloadCipher([new]).decrypt(stored[0]) == "secret prompt"
    assert PayloadCipher([new]).decrypt(feedback) == "secret correction"
