"""What every command needs: the settings chosen by global options and a rich console.

The consoles never read markup or emoji codes: commands print prompts, completions, feedback, names,
descriptions and reasons that users wrote, and ``[/bold]`` in a prompt must print as written (read as
markup it raised ``MarkupError``; ``[red]x[/red]`` vanished, and so did ``[encrypted]``). No command
styles its output with markup, so none is lost.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from llmops.settings import Settings, get_settings
from llmops.store.home import Home, open_home

# Piped output (scripts, CI logs) gets wide tables instead of 80-column wrapping.
_WIDTH = None if sys.stdout.isatty() else 200
console = Console(markup=False, emoji=False, highlight=False, soft_wrap=True, width=_WIDTH)
err_console = Console(stderr=True, markup=False, emoji=False, highlight=False, soft_wrap=True, width=_WIDTH)


def settings_of(ctx: typer.Context) -> Settings:
    root = ctx.find_root()
    if isinstance(root.obj, Settings):
        return root.obj
    return get_settings()


def home_of(ctx: typer.Context) -> Home:
    return open_home(settings_of(ctx))


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def print_json(value: Any) -> None:
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    console.print_json(json.dumps(value, default=_default))
