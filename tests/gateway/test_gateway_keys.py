"""API keys and roles: created once, stored as HMAC only, audited, revoked, expired; the CLI."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from llmops.cli import keys as keys_cli
from llmops.errors import InvalidInput, NotFound, Unauthorized
from llmops.security.keys import KeySpec, KeyStore, hash_key, parse_expiry
from llmops.security.roles import Role, parse_role
from llmops.store import audit
from llmops.store.home import Home
from llmops.store.schema import ApiKey, utcnow


def test_roles_are_ordered_and_parsed() -> None:
    assert Role.ADMIN.allows(Role.DEPLOYER) and Role.DEPLOYER.allows(Role.CONSUMER)
    assert not Role.CONSUMER.allows(Role.DEVELOPER)
    assert parse_role("Deployer") is Role.DEPLOYER
    with pytest.raises(InvalidInput, match="consumer, developer, deployer, admin"):
        parse_role("root")


def test_key_is_stored_only_as_hmac_and_audited(home: Home) -> None:
    keys = KeyStore.from_home(home)
    created = keys.create(KeySpec(name="ci", role=Role.DEVELOPER, models=("a",), rpm=5), reason="ci job")
    assert created.key.startswith("sk-llmops-") and len(created.key) > 40
    assert created.key not in repr(created)
    with home.store.read() as session:
        row = session.execute(select(ApiKey)).scalar_one()
        assert row.key_hash == hash_key(home.settings.secret_value(), created.key)
        assert created.key not in str([getattr(row, c.name) for c in ApiKey.__table__.columns])
        events = list(audit.iter_events(session, action="key.create"))
    assert [e.target for e in events] == [f"key:{created.record.id}"]
    assert created.key not in str(events[0].to_json()) and row.key_hash not in str(events[0].to_json())
    found = keys.lookup(created.key)
    assert found is not None and found.role is Role.DEVELOPER and found.models == ("a",) and found.rpm == 5
    assert keys.lookup(created.key[:-1] + ("A" if created.key[-1] != "A" else "B")) is None
    assert keys.lookup("not-a-key") is None


def test_revocation_and_expiry(home: Home) -> None:
    keys = KeyStore.from_home(home)
    created = keys.create(KeySpec(name="svc"))
    record = keys.lookup(created.key)
    assert record is not None
    record.check_usable()
    revoked = keys.revoke(created.record.id, reason="leaked")
    with pytest.raises(Unauthorized, match="revoked"):
        revoked.check_usable()
    keys.revoke(created.record.id)  # idempotent, audited once
    with home.store.read() as session:
        assert len(list(audit.iter_events(session, action="key.revoke"))) == 1
    expired = keys.create(KeySpec(name="old", expires_at=utcnow() - timedelta(seconds=1)))
    with pytest.raises(Unauthorized, match="expired"):
        expired.record.check_usable()
    with pytest.raises(NotFound, match="keys list"):
        keys.revoke("key_nope")
    assert {r.name for r in keys.list(include_revoked=False)} == {"old"}


def test_parse_expiry() -> None:
    now = utcnow()
    assert parse_expiry("30d", now) == now + timedelta(days=30)
    assert parse_expiry("90m", now) == now + timedelta(minutes=90)
    parsed = parse_expiry("2030-01-01T00:00:00")
    assert parsed is not None and parsed.year == 2030 and parsed.tzinfo is not None
    with pytest.raises(InvalidInput, match="duration"):
        parse_expiry("soon")


def test_keys_cli_create_list_revoke(home: Home) -> None:
    runner = CliRunner()
    created = runner.invoke(
        keys_cli.app,
        [
            "create",
            "--name",
            "bot",
            "--role",
            "consumer",
            "--models",
            "a,b",
            "--rpm",
            "10",
            "--budget-usd",
            "2.5",
        ],
    )
    assert created.exit_code == 0, created.output
    raw = next(line for line in created.output.splitlines() if line.startswith("sk-llmops-"))
    listed = runner.invoke(keys_cli.app, ["list"])
    assert listed.exit_code == 0 and "bot" in listed.output and raw not in listed.output
    assert f"…{raw[-4:]}" in listed.output
    key_id = KeyStore.from_home(home).list()[0].id
    revoked = runner.invoke(keys_cli.app, ["revoke", key_id, "--reason", "rotate"])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert KeyStore.from_home(home).get(key_id).revoked_at is not None
    bad = runner.invoke(keys_cli.app, ["create", "--name", "x", "--role", "god"])
    assert bad.exit_code != 0
