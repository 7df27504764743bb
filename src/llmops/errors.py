"""The one error taxonomy of llmops.

Every error a user can cause or meet is an ``LLMOpsError`` subclass carrying an HTTP status and an
OpenAI-style error body, so the HTTP layers map errors once and the CLI prints one clear line.
Nothing here may import from another llmops package.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A " Did you mean: a, b?" suffix for not-found messages, or "" when nothing is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""


class LLMOpsError(Exception):
    """Base of all expected errors. ``message`` says what went wrong and how to fix it.

    ``detail`` (optional) is what operators need beyond the message (internal addresses, an
    upstream's answer): it goes to logs and stored records, never into the body sent to a client.
    """

    status_code: int = 500
    error_type: str = "internal_error"
    detail: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def to_body(self) -> dict[str, Any]:
        """The OpenAI-compatible error body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers that go with this error (for example ``Retry-After``)."""
        return {}


class InvalidInput(LLMOpsError):
    """The caller sent something malformed; ``param`` names the field."""

    status_code = 400
    error_type = "invalid_request_error"


class PolicyRefused(InvalidInput):
    """Well formed, but a policy of this installation refuses it (an address outside the networks a
    URL may reach); answered 403 so a client does not retry it as a typo."""

    status_code = 403
    error_type = "permission_error"


class Unauthorized(LLMOpsError):
    status_code = 401
    error_type = "authentication_error"


class Forbidden(LLMOpsError):
    status_code = 403
    error_type = "permission_error"


class NotFound(LLMOpsError):
    status_code = 404
    error_type = "not_found_error"


class Conflict(LLMOpsError):
    status_code = 409
    error_type = "conflict_error"


class PayloadTooLarge(LLMOpsError):
    status_code = 413
    error_type = "invalid_request_error"


class RateLimited(LLMOpsError):
    """Over a rate limit or budget; ``retry_after`` is in seconds."""

    status_code = 429
    error_type = "rate_limit_error"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class Overloaded(RateLimited):
    """The service has no room for the request now; the client should retry later."""

    status_code = 503
    error_type = "overloaded_error"


class UpstreamError(LLMOpsError):
    """A replica or remote service failed or answered garbage."""

    status_code = 502
    error_type = "upstream_error"


class IntegrityError(LLMOpsError):
    """Stored data does not match its digest or chain: it was changed outside llmops."""

    status_code = 500
    error_type = "integrity_error"


class StoreUnavailable(LLMOpsError):
    """The metadata database could not be reached or stayed locked past its busy timeout."""

    status_code = 503
    error_type = "store_unavailable"


def invalid_config(
    source: str, errors: Sequence[Mapping[str, Any]], *, env_prefix: str | None = None
) -> InvalidInput:
    """One line for a configuration that failed validation (pydantic's ``exc.errors()``): the source,
    the first field (as its environment variable when ``env_prefix`` is given), what is wrong, and how
    many more problems there are; without pydantic's boilerplate and links."""
    first = errors[0] if errors else {}
    field = ".".join(str(part) for part in first.get("loc", ())) or "value"
    name = f"{env_prefix}{field.upper()}" if env_prefix else field
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "missing":
        message = "field required"
    value = first.get("input")
    got = f" (got {value!r})" if isinstance(value, (str, int, float)) and len(str(value)) <= 80 else ""
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return InvalidInput(f"{source}: {name}: {message}{got}{more}", param=field)
