"""Who is looking: the session's key and its role, and the rule each page declares.

Every page names the role it needs (``PageRule``); the app refuses to build a route without one.
``Viewer`` is the session's key record: its role decides which pages open (a lower role gets 403)
and its id scopes what a consumer sees (its own requests and spend only). A revoked or expired key
has no viewer: the browser is sent to the login page.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmops.dashboard.session import Session
from llmops.errors import NotFound, Unauthorized
from llmops.security.keys import KeyRecord, KeyStore
from llmops.security.roles import Role


@dataclass(frozen=True)
class Viewer:
    """The key behind a dashboard session, and the CSRF token its forms carry."""

    key: KeyRecord
    session: Session
    csrf: str

    @property
    def role(self) -> Role:
        return self.key.role

    @property
    def actor(self) -> str:
        """How the audit log names this viewer: the same ``key:ID`` as the admin API."""
        return f"key:{self.key.id}"

    def may(self, role: Role) -> bool:
        return self.key.role.allows(role)

    @property
    def tenant(self) -> str | None:
        """The key whose data alone this viewer sees, or None for every key (developer and above)."""
        return None if self.may(Role.DEVELOPER) else self.key.id


@dataclass(frozen=True)
class PageRule:
    """What a route needs: ``role`` None means public (login, static files)."""

    role: Role | None
    changes_state: bool = False


def session_key(keys: KeyStore, session: Session) -> KeyRecord | None:
    """The usable key record of ``session`` (None when the key was deleted, revoked or expired)."""
    try:
        record = keys.get(session.key_id)
        record.check_usable()
    except (NotFound, Unauthorized):
        return None
    return record
