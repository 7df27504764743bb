from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from llmops.errors import InvalidInput, StoreUnavailable
from llmops.store.database import Store
from llmops.store.home import Home
from llmops.store.migrate import current_revision, head_revision
from llmops.store.schema import Base, Experiment


def test_migrations_create_exactly_the_schema(home: Home) -> None:
    assert current_revision(home.store) == head_revision()
    tables = set(inspect(home.store.engine).get_table_names()) - {"alembic_version"}
    assert tables == set(Base.metadata.tables)


def test_transaction_rolls_back_on_error(home: Home) -> None:
    with pytest.raises(RuntimeError), home.store.transaction() as session:
        session.add(Experiment(name="half-written"))
        session.flush()
        raise RuntimeError("boom")
    with home.store.read() as session:
        assert session.execute(select(Experiment).where(Experiment.name == "half-written")).first() is None


def test_sqlite_uses_wal(sqlite_home: Home) -> None:
    with sqlite_home.store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def _hold_lock(path: Path, seconds: float, started: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    started.set()
    time.sleep(seconds)
    conn.execute("ROLLBACK")
    conn.close()


def test_sqlite_writer_waits_for_a_short_lock(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", busy_timeout_s=10)
    store.upgrade()
    started = threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(tmp_path / "db.sqlite", 0.5, started))
    holder.start()
    started.wait()
    with store.transaction() as session:  # retried inside the busy timeout, then succeeds
        session.add(Experiment(name="after-lock"))
    holder.join()
    with store.read() as session:
        assert session.execute(select(Experiment.name)).scalar_one() == "after-lock"
    store.dispose()


def test_sqlite_lock_past_timeout_is_a_clear_error(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", busy_timeout_s=0.3)
    store.upgrade()
    started = threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(tmp_path / "db.sqlite", 2.0, started))
    holder.start()
    started.wait()
    with pytest.raises(StoreUnavailable, match="locked"), store.transaction() as session:
        session.add(Experiment(name="never"))
    holder.join()
    store.dispose()


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(InvalidInput, match="mysql"):
        Store("mysql://localhost/db")


def test_unmigrated_store_says_how_to_fix(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    with pytest.raises(StoreUnavailable, match="llmops init"), store.read() as session:
        session.execute(select(Experiment)).all()
    store.dispose()
