"""Dashboard sessions and CSRF tokens: a signed, short-lived cookie instead of the API key.

Logging in exchanges an API key for a session cookie (``HttpOnly``, ``SameSite=Strict``, ``Path=/ui``,
``Secure`` when served over HTTPS). The cookie holds the key's id, an expiry and a random nonce, signed
with HMAC-SHA256 under a key derived from the server secret; it never holds the API key. Every
request re-reads the key's record, so a revoked or expired key ends its sessions at once, and every
gateway worker accepts a session made by another (they share the secret, not memory).

The CSRF token of a session is an HMAC of its nonce: a form carries it in a hidden field and a
state-changing request without the right one is refused (403). The login form, which has no
session yet, uses a double-submit token: a random cookie that the form must repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

SESSION_COOKIE = "llmops_session"
LOGIN_COOKIE = "llmops_login"
CSRF_FIELD = "csrf"
_VERSION = "v1"


@dataclass(frozen=True)
class Session:
    """A verified session: whose key, until when, and the nonce its CSRF token is derived from."""

    key_id: str
    expires_at: float
    nonce: str


class SessionSigner:
    """Make and check session cookies and CSRF tokens with keys derived from the server secret."""

    def __init__(self, secret: bytes, *, ttl_s: float) -> None:
        self._session_key = hmac.new(secret, b"llmops dashboard session", hashlib.sha256).digest()
        self._csrf_key = hmac.new(secret, b"llmops dashboard csrf", hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def issue(self, key_id: str, now: float | None = None) -> tuple[str, Session]:
        """A new cookie value for ``key_id`` and the session it stands for."""
        session = Session(key_id, (now or time.time()) + self.ttl_s, secrets.token_urlsafe(16))
        body = f"{_VERSION}.{session.key_id}.{int(session.expires_at)}.{session.nonce}"
        return f"{body}.{self._sign(body)}", session

    def verify(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session in ``cookie``, or None when it is missing, forged, malformed or expired."""
        if not cookie:
            return None
        body, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        parts = body.split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[2].isdigit():
            return None
        expires_at = float(parts[2])
        if expires_at <= (now or time.time()):
            return None
        return Session(parts[1], expires_at, parts[3])

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._csrf_key, session.nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_valid(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(session), token or "")

    def _sign(self, body: str) -> str:
        return hmac.new(self._session_key, body.encode(), hashlib.sha256).hexdigest()


def new_login_token() -> str:
    """The double-submit token of the login form (a cookie and a hidden field that must match)."""
    return secrets.token_urlsafe(24)


def login_token_valid(cookie: str | None, field: str | None) -> bool:
    return bool(cookie) and bool(field) and hmac.compare_digest(cookie or "", field or "")
