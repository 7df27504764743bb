"""`llmops privacy`: where a person's data is, and erasing it everywhere."""

from __future__ import annotations

import typer

from llmops.cli.context import console, home_of, settings_of

app = typer.Typer(help="Privacy: subject reports, erasure, retention and payload keys.", no_args_is_help=True)


@app.command("report")
def report(
    ctx: typer.Context, subject: str = typer.Option(..., "--subject", help="The user id to look for.")
) -> None:
    """List everywhere the subject's data is: requests, feedback, datasets, evaluations, models."""
    from llmops.privacy.subject import find_subject

    found = find_subject(home_of(ctx), subject)
    console.print(f"requests: {len(found.request_ids)}  feedback: {found.feedback_rows}")
    for ref, rows in found.rows_per_dataset.items():
        console.print(f"dataset {ref}: {rows} rows")
    for run_id in found.eval_runs:
        console.print(f"evaluation run {run_id} (its stored outputs)")
    for ref in found.model_versions:
        console.print(f"model version {ref} (trained on the data above)")


@app.command("erase")
def erase(
    ctx: typer.Context,
    subject: str = typer.Option(..., "--subject", help="The user id whose data to erase."),
    reason: str | None = typer.Option(None, help="Why, for the audit log (e.g. a ticket number)."),
) -> None:
    """Delete the subject's requests and feedback, rewrite datasets without them, flag models."""
    from llmops.privacy.erasure import erase_subject

    result = erase_subject(home_of(ctx), subject, reason=reason)
    console.print(
        f"erased {len(result.report.request_ids)} requests and {result.report.feedback_rows} feedback rows"
    )
    for old, new in result.replaced.items():
        console.print(f"dataset {old} replaced by {new}")
    for ref in result.report.model_versions:
        console.print(f"model version {ref} flagged as trained on erased data")
    console.print(f"audit event {result.audit_seq}")


@app.command("purge")
def purge(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what is past retention; change nothing."),
) -> None:
    """Delete or blank what is past retention (LLMOPS_RETENTION_*_DAYS): request payloads, request
    rows, feedback; audit events (kept at least 180 days) are counted, never deleted."""
    from llmops.privacy.retention import RetentionPolicy
    from llmops.privacy.retention import purge as run_purge

    policy = RetentionPolicy.from_settings(settings_of(ctx))
    result = run_purge(home_of(ctx), policy, dry_run=dry_run)
    verb = "would purge" if dry_run else "purged"
    counts = result.counts
    console.print(
        f"{verb}: request payloads {counts['request_payloads']}, request rows {counts['request_metadata']}, "
        f"feedback {counts['feedback']}; audit events past retention {counts['audit_events']} (kept)"
    )
    if result.audit_seq is not None:
        console.print(f"audit event {result.audit_seq}")


@app.command("rotate-keys")
def rotate_keys(ctx: typer.Context) -> None:
    """Re-encrypt every logged prompt, completion and feedback text with the first of LLMOPS_PAYLOAD_KEYS."""
    from llmops.errors import InvalidInput
    from llmops.privacy.retention import rotate_payloads
    from llmops.security.payload_crypto import PayloadCipher

    cipher = PayloadCipher.from_settings(settings_of(ctx))
    if cipher is None:
        raise InvalidInput("set LLMOPS_PAYLOAD_KEYS (new key first) to rotate", param="LLMOPS_PAYLOAD_KEYS")
    counts = rotate_payloads(home_of(ctx), cipher)
    console.print(
        f"re-encrypted {counts['requests']} request-log rows and {counts['feedback']} feedback rows"
    )
