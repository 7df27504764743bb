"""The web dashboard: server-rendered pages over the store, behind the gateway's keys and roles.

Owns the login (an API key exchanged for a signed, short-lived session cookie), CSRF tokens, the
security headers, the pages (Jinja2 templates, SVG charts, a vendored pinned htmx) and the read
models they need (``queries``). It reads through the domain packages and changes state only
through them (keys, rollout signals), so the roles and audit events are those of the admin API and
the CLI. A leaf: nothing imports it but the CLI, which mounts it on the gateway (``llmops serve``)
or serves it over a store alone (``llmops ui``).
"""

from llmops.dashboard.app import create_dashboard, mount_dashboard

__all__ = ["create_dashboard", "mount_dashboard"]
