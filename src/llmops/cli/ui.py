"""`llmops ui`: the dashboard over this home's store, without a running gateway.

The gateway (`llmops serve`) serves the same dashboard under /ui/ with its live replica state; this
command is for a store alone (a laptop, a CI artifact, a team store with no gateway up).
"""

from __future__ import annotations

import typer

from llmops.cli.context import console, home_of


def ui(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(4100, min=1, max=65535, help="Port."),
    session_minutes: float = typer.Option(
        30.0,
        "--session-minutes",
        min=1,
        max=24 * 60,
        help="How long a login lasts (the session cookie's life).",
    ),
    secure_cookies: bool = typer.Option(
        False, "--secure-cookies", help="Mark cookies Secure (set it when a TLS proxy serves the dashboard)."
    ),
) -> None:
    """Serve the dashboard (log in with an API key; `llmops keys create` makes one)."""
    import uvicorn

    from llmops.dashboard import create_dashboard

    app = create_dashboard(home_of(ctx), session_ttl_s=session_minutes * 60, secure_cookies=secure_cookies)
    console.print(f"dashboard on http://{host}:{port}/ui/ (log in with an API key: `llmops keys create`)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
