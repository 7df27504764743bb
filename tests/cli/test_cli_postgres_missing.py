"""A PostgreSQL URL naming a database that does not exist: one line naming it and the createdb step."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.engine import make_url
from tests.conftest import POSTGRES_ADMIN_URL, CliRunner

from llmops.settings import reset_settings

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("command", [("db", "upgrade"), ("db", "current"), ("init",), ("models", "list")])
def test_missing_database_names_it_and_the_createdb_step(
    command: tuple[str, ...], cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"llmops_missing_{uuid.uuid4().hex[:8]}"
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    monkeypatch.setenv("LLMOPS_DATABASE_URL", url)
    reset_settings()
    result = cli(*command)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert f'database "{name}" does not exist' in lines[0]
    assert f"createdb -h 127.0.0.1 -p 5432 -U postgres {name}" in lines[0]
    assert "Traceback" not in result.err + result.out
