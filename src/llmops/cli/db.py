"""`llmops init` and `llmops db`: create the home and migrate the metadata store."""

from __future__ import annotations

import typer

from llmops.cli.context import console, settings_of
from llmops.store.database import Store
from llmops.store.home import open_home, tighten_home
from llmops.store.migrate import current_revision, head_revision

app = typer.Typer(help="Metadata database: migrations.", no_args_is_help=True)


def init(ctx: typer.Context) -> None:
    """Create the home folder (owner-only), its secret and the metadata store, and migrate it to the
    latest schema. An existing home is made owner-only: folders 0700, files 0600."""
    settings = settings_of(ctx)
    home = open_home(settings, migrate=True)
    settings.secret_value()
    tightened = tighten_home(settings)
    if tightened:
        console.print(f"made {len(tightened)} files and folders of the home owner-only")
    console.print(f"home: {settings.resolved_home()}")
    console.print(f"database: {home.store.engine.url.render_as_string(hide_password=True)}")
    console.print(f"artifacts: {home.artifacts.root}")
    console.print(f"schema: {current_revision(home.store)}")


@app.command("upgrade")
def upgrade(ctx: typer.Context, revision: str = typer.Option("head", help="Target revision.")) -> None:
    """Apply migrations to the metadata store."""
    store = Store.from_settings(settings_of(ctx))
    try:
        store.upgrade(revision)
        console.print(f"schema at {current_revision(store)}")
    finally:
        store.dispose()


@app.command("current")
def current(ctx: typer.Context) -> None:
    """Show the store's schema revision and the latest one."""
    store = Store.from_settings(settings_of(ctx))
    try:
        console.print(f"current: {current_revision(store)}  head: {head_revision()}")
    finally:
        store.dispose()
