"""The metadata database behind one ``Store`` object, picked by URL scheme.

SQLite (the embedded default) runs in WAL mode with a busy timeout; write transactions start with
``BEGIN IMMEDIATE`` so two writers queue on the lock instead of failing on a read-to-write upgrade.
PostgreSQL goes through psycopg 3; writers that must be serialised lock rows ``FOR UPDATE``.
Every multi-row change is one transaction: ``with store.transaction() as session: ...``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Select, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session, sessionmaker

from llmops.errors import InvalidInput, StoreUnavailable
from llmops.settings import Settings
from llmops.store.private_files import private_dir, private_file

RowT = TypeVar("RowT")


@dataclass(frozen=True)
class DialectSetup:
    """How to open one kind of database: engine arguments and per-connection set-up."""

    normalise_url: Callable[[str], str]
    engine_kwargs: Callable[[str, float], dict[str, Any]]
    configure: Callable[[Engine, float, bool], None]


def _sqlite_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        # created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the same mode
        path = Path(parsed.database).expanduser()
        private_file(private_dir(path.parent) / path.name)
    return url


def _sqlite_kwargs(url: str, busy_timeout_s: float) -> dict[str, Any]:
    return {"connect_args": {"timeout": busy_timeout_s, "check_same_thread": False}}


def _sqlite_configure(engine: Engine, busy_timeout_s: float, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" event below (pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _postgres_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _postgres_kwargs(url: str, busy_timeout_s: float) -> dict[str, Any]:
    return {"pool_pre_ping": True, "connect_args": {"connect_timeout": max(1, int(busy_timeout_s))}}


def _no_configure(engine: Engine, busy_timeout_s: float, immediate: bool) -> None:
    return None


DIALECTS: dict[str, DialectSetup] = {
    "sqlite": DialectSetup(_sqlite_url, _sqlite_kwargs, _sqlite_configure),
    "postgresql": DialectSetup(_postgres_url, _postgres_kwargs, _no_configure),
    "postgres": DialectSetup(_postgres_url, _postgres_kwargs, _no_configure),
}


def _dialect_of(url: str) -> DialectSetup:
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in DIALECTS:
        raise InvalidInput(
            f"unsupported database URL scheme {scheme!r}; use one of: {', '.join(sorted(DIALECTS))}",
            param="database_url",
        )
    return DIALECTS[scheme]


class Store:
    """The metadata database. ``transaction()`` for writes, ``read()`` for reads.

    Contract: a ``transaction()`` block commits on success and rolls back on any exception; on
    SQLite it holds the write lock from its first statement, so read-modify-write inside it is safe;
    on PostgreSQL callers lock the rows they modify with ``with_for_update()``.
    """

    def __init__(self, url: str, *, busy_timeout_s: float = 30.0) -> None:
        dialect = _dialect_of(url)
        self.url = dialect.normalise_url(url)
        self.busy_timeout_s = busy_timeout_s
        kwargs = dialect.engine_kwargs(self.url, busy_timeout_s)
        self.engine = create_engine(self.url, **kwargs)
        dialect.configure(self.engine, busy_timeout_s, True)
        self._read_engine = create_engine(self.url, **kwargs)
        dialect.configure(self._read_engine, busy_timeout_s, False)
        self._writer = sessionmaker(self.engine, expire_on_commit=False)
        self._reader = sessionmaker(self._read_engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls(settings.resolved_database_url(), busy_timeout_s=settings.sqlite_busy_timeout_s)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One write transaction: commit on success, roll back on error."""
        with _translate_db_errors(self), self._writer() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session (no write lock taken on SQLite)."""
        with _translate_db_errors(self), self._reader() as session:
            yield session

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A plain connection of the write engine (migrations), with the store's error messages."""
        with _translate_db_errors(self), self.engine.connect() as connection:
            yield connection

    def upgrade(self, revision: str = "head") -> None:
        """Apply Alembic migrations up to ``revision``."""
        from llmops.store.migrate import upgrade

        upgrade(self, revision)

    def dispose(self) -> None:
        self.engine.dispose()
        self._read_engine.dispose()


_MISSING_DATABASE = re.compile(r'database "([^"]+)" does not exist')


def _missing_database(store: Store, name: str) -> StoreUnavailable:
    url = make_url(store.url)
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    user = f" -U {url.username}" if url.username else ""
    return StoreUnavailable(
        f'database "{name}" does not exist on {where}; create it first '
        f"(createdb -h {url.host or 'localhost'} -p {url.port or 5432}{user} {name}), "
        "then run `llmops db upgrade`"
    )


@contextmanager
def _translate_db_errors(store: Store) -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        text = str(exc.orig) if exc.orig is not None else str(exc)
        missing = _MISSING_DATABASE.search(text)
        if missing:
            raise _missing_database(store, missing.group(1)) from exc
        if "locked" in text or "busy" in text:
            raise StoreUnavailable(
                f"the database stayed locked for more than {store.busy_timeout_s:g}s by another "
                "writer; retry, or raise LLMOPS_SQLITE_BUSY_TIMEOUT_S"
            ) from exc
        if "no such table" in text or "does not exist" in text:
            raise StoreUnavailable(
                "the database has no llmops schema yet; run `llmops init` (or `llmops db upgrade`)"
            ) from exc
        raise StoreUnavailable(f"database error: {text.splitlines()[0]}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable("lost the connection to the database; retry") from exc
        raise


def get_or_create(session: Session, query: Select[Any], make: Callable[[], RowT]) -> RowT:
    """The row ``query`` finds, or a new one from ``make()`` added in a savepoint.

    When another process inserts the same unique row between the look-up and the insert, the
    savepoint rolls back alone and the row it created is returned: the caller's transaction survives.
    """
    found = session.execute(query).scalar_one_or_none()
    if found is not None:
        return found
    try:
        with session.begin_nested():
            row = make()
            session.add(row)
    except SAIntegrityError:
        return session.execute(query).scalar_one()
    return row
