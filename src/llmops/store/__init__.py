"""The store layer: the metadata database, the content-addressed artifact store and the audit chain.

Owns: SQLAlchemy models and sessions (SQLite by default, PostgreSQL at scale), Alembic migrations,
content-addressed files and directories, and the hash-chained audit log.
Must not import: any llmops package above ``settings``/``errors`` (no HTTP, models or gateway).
"""

from llmops.store.artifacts import ArtifactStore
from llmops.store.database import Store

__all__ = ["ArtifactStore", "Store"]
