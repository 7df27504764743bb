"""A ``Home``: the settings, metadata store and artifact store one process works against.

The embedded default (a SQLite file under ``LLMOPS_HOME``) is created and migrated on first use;
a PostgreSQL store is migrated explicitly with ``llmops db upgrade``. The home is owner-only: created
0700, its database 0600 (``private_files``); ``tighten_home`` fixes a home made before that.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from llmops.settings import Settings, get_settings
from llmops.store.artifacts import ArtifactStore
from llmops.store.database import Store
from llmops.store.migrate import current_revision, head_revision
from llmops.store.private_files import DIR_MODE, FILE_MODE, READ_ONLY_MODE, private_dir

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
    private_dir(settings.resolved_home())
    store = Store.from_settings(settings)
    wants_migration = migrate or (migrate is None and store.dialect == "sqlite")
    if wants_migration and current_revision(store) != head_revision():
        store.upgrade()
    home = Home(settings, store, ArtifactStore(settings.resolved_artifacts()))
    _OPEN[key] = home
    return home


def tighten_home(settings: Settings) -> list[Path]:
    """Make an existing home owner-only: every folder 0700, every file 0600 (artifacts 0400).
    Returns what was changed (``llmops init`` calls it, for homes made before homes were private)."""
    home = settings.resolved_home()
    changed = []
    for path in [home, *home.rglob("*")]:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        read_only = not mode & stat.S_IWUSR  # an immutable artifact stays read-only
        wanted = DIR_MODE if path.is_dir() else READ_ONLY_MODE if read_only else FILE_MODE
        if mode != wanted:
            os.chmod(path, wanted)
            changed.append(path)
    return changed


def close_homes() -> None:
    """Dispose every open store (tests, and processes that switch homes)."""
    for home in _OPEN.values():
        home.store.dispose()
    _OPEN.clear()
