"""The ``llmops`` entry point: global options, the command areas, and one error path.

Every error is one line on stderr starting with ``error:``: user errors (``LLMOpsError``, invalid
settings) and usage errors (an unknown option, a bad value) exit 2; a file or folder the command
cannot use (``OSError``) exits 2 too; anything else is a failure of llmops itself and exits 3.
``--debug`` shows the traceback instead (usage errors keep click's own text there).
Commands run under the owner-only umask (077, as PostgreSQL's server does): every file they or the
libraries they call create (the home, spill files, metrics files, exports) is private to the user.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from pydantic import ValidationError
from typer._click.exceptions import NoArgsIsHelpError, UsageError

from llmops.cli import (
    audit,
    data,
    db,
    deploy,
    evals,
    keys,
    loop,
    models,
    monitor,
    pipeline,
    privacy,
    replica,
    requests,
    rollout,
    runs,
    serve_gateway,
    train,
    ui,
)
from llmops.cli.context import err_console
from llmops.errors import LLMOpsError, invalid_config
from llmops.settings import Settings
from llmops.store.private_files import OWNER_ONLY_UMASK

app = typer.Typer(
    name="llmops",
    help="llmops: data, training, evaluation, registry, serving and monitoring of language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.command("init")(db.init)
app.add_typer(data.app, name="data")
app.add_typer(train.app, name="train")
app.add_typer(runs.app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(audit.app, name="audit")
app.add_typer(privacy.app, name="privacy")
app.add_typer(keys.app, name="keys")
app.command("serve")(serve_gateway.serve)
app.command("replica")(replica.replica)
app.add_typer(evals.app, name="eval")
app.add_typer(monitor.app, name="monitor")
app.add_typer(requests.app, name="requests")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(deploy.app, name="deploy")
app.add_typer(rollout.app, name="rollout")
app.add_typer(loop.app, name="loop")
app.command("ui")(ui.ui)


@app.callback()
def root(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, "--home", help="Use this LLMOPS_HOME instead of the environment's."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    """Each area has its own commands: `llmops AREA --help`."""
    if home is not None:
        ctx.obj = Settings(home=home)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 a check failed, 2 a user error)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    previous_umask = os.umask(OWNER_ONLY_UMASK)
    try:
        return _run(args, debug)
    finally:
        os.umask(previous_umask)  # in-process callers (tests, scripts) get theirs back


def _run(args: list[str], debug: bool) -> int:
    try:
        result = app(args=args, prog_name="llmops", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except NoArgsIsHelpError as exc:  # `llmops AREA` alone: its help
        exc.show()
        return int(exc.exit_code)
    except UsageError as exc:
        if debug:
            exc.show()
        else:
            err_console.print(f"error: {_usage_message(exc)}", markup=False)
        return int(exc.exit_code)
    except typer.exceptions.TyperException as exc:  # click's other errors (a file it cannot open)
        err_console.print(f"error: {_one_line(str(exc))}", markup=False)
        return int(getattr(exc, "exit_code", 2))
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except (LLMOpsError, ValidationError, OSError) as exc:
        if debug:
            raise
        err_console.print(f"error: {_user_message(exc)}", markup=False)
        return 2
    except Exception as exc:  # a failure of llmops itself: one line, the trace with --debug
        if debug:
            raise
        detail = _one_line(str(exc)) or "no detail"
        err_console.print(
            f"error: unexpected {type(exc).__name__}: {detail} (run again with --debug for the traceback)",
            markup=False,
        )
        return 3
    return int(result) if isinstance(result, int) else 0


def _usage_message(exc: UsageError) -> str:
    """Click's message in one line, with the command whose --help explains the usage."""
    where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return _one_line(exc.format_message()) + where


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def _user_message(exc: LLMOpsError | ValidationError | OSError) -> str:
    if isinstance(exc, LLMOpsError):
        return exc.message
    if isinstance(exc, OSError):
        reason = exc.strerror or _one_line(str(exc))
        return f"cannot use {exc.filename}: {reason}" if exc.filename is not None else reason
    # Settings are validated lazily, wherever a command first reads them: name the variable.
    if exc.title == Settings.__name__:
        return invalid_config("configuration", exc.errors(), env_prefix="LLMOPS_").message
    return invalid_config(exc.title, exc.errors()).message


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
