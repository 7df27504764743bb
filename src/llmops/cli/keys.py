"""`llmops keys`: create (shown once), list and revoke the gateway's API keys."""

from __future__ import annotations

import typer
from rich.table import Table

from llmops.cli.context import console, err_console, home_of, print_json
from llmops.security.keys import KeySpec, KeyStore, parse_expiry
from llmops.security.roles import ROLE_NAMES, parse_role

app = typer.Typer(help="API keys of the gateway: create, list, revoke.", no_args_is_help=True)


def _keys(ctx: typer.Context) -> KeyStore:
    return KeyStore.from_home(home_of(ctx))


def _split_models(models: list[str]) -> tuple[str, ...]:
    names = [name.strip() for value in models for name in value.split(",")]
    return tuple(dict.fromkeys(name for name in names if name))


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Option(..., "--name", help="Who or what the key is for."),
    role: str = typer.Option("consumer", "--role", help=f"One of: {', '.join(ROLE_NAMES)}."),
    models: list[str] = typer.Option(
        [], "--models", help="Deployments the key may call (repeat or comma-separate; default all)."
    ),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute (default unlimited)."),
    tpm: int | None = typer.Option(None, "--tpm", help="Tokens per minute (default unlimited)."),
    budget_usd: float | None = typer.Option(None, "--budget-usd", help="Spend limit in USD."),
    expires: str | None = typer.Option(None, "--expires", help="30d, 12h, 90m or an ISO-8601 time."),
    reason: str | None = typer.Option(None, help="Why, for the audit log."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (including the key, once)."),
) -> None:
    """Create a key. The key is printed once and never stored; keep it now."""
    spec = KeySpec(
        name=name,
        role=parse_role(role),
        models=_split_models(models),
        rpm=rpm,
        tpm=tpm,
        budget_usd=budget_usd,
        expires_at=parse_expiry(expires),
    )
    created = _keys(ctx).create(spec, reason=reason)
    if json_out:
        print_json({**created.record.to_json(), "key": created.key})
        return
    console.print(f"created {created.record.id} ({created.record.role.label}) for {name!r}", markup=False)
    console.print(created.key, markup=False)
    err_console.print("this is the only time the key is shown; store it in a secret manager now")


@app.command("list")
def list_keys(
    ctx: typer.Context,
    include_revoked: bool = typer.Option(
        True, "--all/--active", help="Show revoked and expired keys too, or only usable ones."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List keys with their policy and state (active, expired, revoked); never the keys themselves."""
    records = _keys(ctx).list(include_revoked=include_revoked)
    if not include_revoked:
        records = [record for record in records if record.state() == "active"]
    if json_out:
        print_json([{**record.to_json(), "state": record.state()} for record in records])
        return
    table = Table("id", "name", "role", "key", "models", "rpm", "tpm", "budget", "expires", "state")
    for r in records:
        state = r.state()
        table.add_row(
            r.id,
            r.name,
            r.role.label,
            f"…{r.hint}",
            ", ".join(r.models) or "all",
            str(r.rpm or "-"),
            str(r.tpm or "-"),
            f"${r.budget_usd:g}" if r.budget_usd is not None else "-",
            r.expires_at.isoformat(timespec="seconds") if r.expires_at else "-",
            state,
        )
    console.print(table)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: str = typer.Argument(..., help="The key's id (key_...), from `llmops keys list`."),
    reason: str | None = typer.Option(None, help="Why, for the audit log."),
) -> None:
    """Revoke a key; every gateway worker refuses it within its key-cache TTL."""
    record = _keys(ctx).revoke(key_id, reason=reason)
    console.print(f"revoked {record.id} ({record.name})", markup=False)
