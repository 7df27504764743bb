"""Shared fixtures: isolated homes on SQLite and on the real PostgreSQL server, tiny models."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.factories import make_tiny_model

from llmops.settings import Settings, reset_settings
from llmops.store.home import Home, close_homes, open_home

POSTGRES_ADMIN_URL = os.environ.get(
    "LLMOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own LLMOPS_HOME, so nothing leaks between tests or into the repo."""
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LLMOPS_DATABASE_URL", raising=False)
    monkeypatch.delenv("LLMOPS_ARTIFACTS", raising=False)
    monkeypatch.setenv("LLMOPS_ACTOR", "tester")
    reset_settings()
    yield
    close_homes()
    reset_settings()


def _postgres_schema_url() -> Iterator[str]:
    """A fresh schema in the `test` database for one test; dropped afterwards."""
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        close_homes()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store under test: a SQLite file in a temp dir, or a private schema on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        yield from _postgres_schema_url()


@pytest.fixture
def home(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.setenv("LLMOPS_DATABASE_URL", database_url)
    reset_settings()
    return open_home(Settings(home=tmp_path / "home", database_url=database_url), migrate=True)


@pytest.fixture
def sqlite_home(tmp_path: Path) -> Home:
    return open_home(Settings(home=tmp_path / "home"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@dataclass
class CliResult:
    code: int
    out: str
    err: str


CliRunner = Callable[..., CliResult]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """Run the real `llmops` entry point in-process: ``cli("models", "list")``."""
    from llmops.cli.main import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
