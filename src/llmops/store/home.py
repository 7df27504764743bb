"""A ``Home``: the settings, metadata store and artifact store one process works against.

The embedded default (a SQLite file under ``LLMOPS_HOME``) is created and migrated on first use;
a PostgreSQL store is migrated explicitly with ``llmops db upgrade``.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmops.settings import Settings, get_settings
from llmops.store.artifacts import ArtifactStore
from llmops.store.database import Store
from llmops.store.migrate import current_revision, head_revision

_OPEN: dict[tuple[str, str], Home] = {}


@dataclass
class Home:
    settings: Settings
    store: Store
    artifacts: ArtifactStore

    @property
    def actor(self) -> str:
        return self.settings.actor


def open_home(settings: Settings | None = None, *, migrate: bool | None = None) -> Home:
    """Open (once per process and location) the store and artifacts named by ``settings``.

    ``migrate=None`` migrates SQLite stores automatically and leaves others to ``llmops db upgrade``.
    """
    settings = settings or get_settings()
    key = (settings.resolved_database_url(), str(settings.resolved_artifacts()))
    if key in _OPEN:
        return _OPEN[key]
    settings.resolved_home().mkdir(parents=True, exist_ok=True)
    store = Store.from_settings(settings)
    wants_migration = migrate or (migrate is None and store.dialect == "sqlite")
    if wants_migration and current_revision(store) != head_revision():
        store.upgrade()
    home = Home(settings, store, ArtifactStore(settings.resolved_artifacts()))
    _OPEN[key] = home
    return home


def close_homes() -> None:
    """Dispose every open store (tests, and processes that switch homes)."""
    for home in _OPEN.values():
        home.store.dispose()
    _OPEN.clear()
