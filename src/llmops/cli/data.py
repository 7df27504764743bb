"""`llmops data`: ingest, synthesise, transform, split, list, show and export dataset versions."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from llmops.cli.context import console, home_of, print_json
from llmops.data import operations, synth
from llmops.data.readers import write_jsonl, write_parquet
from llmops.data.split import SplitFractions
from llmops.data.versions import DatasetStore, DatasetVersionInfo
from llmops.errors import InvalidInput

app = typer.Typer(help="Datasets: versioned by content, with lineage.", no_args_is_help=True)


def _store(ctx: typer.Context) -> DatasetStore:
    return DatasetStore.from_home(home_of(ctx))


def _done(info: DatasetVersionInfo) -> None:
    console.print(
        f"{info.ref}: {info.num_rows} rows, {info.num_tokens or 0} tokens, digest {info.digest[:12]}"
    )


@app.command("ingest")
def ingest(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="A .jsonl, .csv or .parquet file."),
    name: str = typer.Option(..., "--name", help="Dataset name."),
    kind: str | None = typer.Option(
        None, help="text, prompt_completion or chat; default from the first row."
    ),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip malformed rows and count them."),
) -> None:
    """Ingest a file as a new version of NAME."""
    info, skipped = operations.ingest(_store(ctx), path, name, kind=kind, skip_invalid=skip_invalid)
    _done(info)
    if skipped:
        console.print(f"skipped {skipped} invalid rows")


@app.command("synth")
def synthesise(
    ctx: typer.Context,
    task: str = typer.Argument(..., help=f"One of: {', '.join(sorted(synth.TASKS))}."),
    name: str = typer.Option(..., "--name", help="Dataset name."),
    n: int = typer.Option(1000, "--n", help="Rows to generate."),
    seed: int = typer.Option(0, help="Seed; the same seed gives the same rows."),
    domain: str = typer.Option(
        "default", help="Input distribution; another domain makes a shift on purpose."
    ),
) -> None:
    """Generate a synthetic task whose answers can be checked exactly."""
    _done(operations.synthesise(_store(ctx), task, name, n=n, seed=seed, domain=domain))


@app.command("transform")
def transform(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="Input version: NAME or NAME@VERSION."),
    step: str = typer.Argument(..., help=f"One of: {', '.join(operations.TRANSFORMS)}."),
    name: str | None = typer.Option(None, "--name", help="Output dataset name (default: the input's)."),
    threshold: float | None = typer.Option(None, help="dedup-near: Jaccard similarity threshold."),
    min_tokens: int | None = typer.Option(None, help="filter-length: minimum tokens."),
    max_tokens: int | None = typer.Option(None, help="filter-length: maximum tokens."),
) -> None:
    """Apply one cleaning step; the result is a new version whose parent is REF."""
    params: dict[str, object] = {}
    if threshold is not None:
        params["threshold"] = threshold
    if min_tokens is not None:
        params["min_tokens"] = min_tokens
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    detector = None
    if step == "scrub-pii":
        from llmops.security.redaction import ScrubRedactor

        detector = ScrubRedactor()
    info, report = operations.transform(_store(ctx), ref, step, name, params=params, detector=detector)
    _done(info)
    console.print(json.dumps(report.to_dict()), markup=False)


@app.command("split")
def split(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="Input version: NAME or NAME@VERSION."),
    seed: int = typer.Option(0, help="Seed of the split."),
    key: str | None = typer.Option(
        None, help="Field that decides a row's split (rows with equal keys stay together)."
    ),
    fractions: str = typer.Option("0.8,0.1,0.1", help="train,validation,test fractions."),
) -> None:
    """Split REF into NAME-train, NAME-validation and NAME-test versions."""
    try:
        train, validation, test = (float(x) for x in fractions.split(","))
    except ValueError:
        raise InvalidInput("--fractions takes three numbers, e.g. 0.8,0.1,0.1", param="fractions") from None
    parts = operations.split(
        _store(ctx), ref, seed=seed, key=key, fractions=SplitFractions(train, validation, test)
    )
    for info in (parts.train, parts.validation, parts.test):
        if info is not None:
            _done(info)


@app.command("list")
def list_datasets(ctx: typer.Context) -> None:
    """List datasets with their latest version."""
    table = Table("dataset", "latest", "rows", "tokens", "schema", "made by", "digest")
    for info in _store(ctx).list_datasets():
        made_by = (info.transform or {}).get("name", "-")
        table.add_row(
            info.name,
            f"{info.version} (erased)" if info.erased else str(info.version),
            str(info.num_rows),
            str(info.num_tokens or 0),
            info.schema_kind,
            made_by,
            info.digest[:12],
        )
    console.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Rows, tokens, length histogram and lineage of a version."""
    info = _store(ctx).get(ref)
    if json_out:
        print_json(info)
        return
    console.print(f"{info.ref} ({info.schema_kind}): {info.num_rows} rows, {info.num_tokens or 0} tokens")
    if info.erased:
        console.print(f"ERASED: {info.erased_note()}", markup=False)
    console.print(f"digest: {info.digest}")
    console.print(f"created {info.created_at.isoformat(timespec='seconds')} by {info.created_by}")
    transform = info.transform or {}
    console.print(
        f"made by: {transform.get('name', '-')} {json.dumps(transform.get('params', {}))}", markup=False
    )
    if "report" in transform:
        console.print(f"report: {json.dumps(transform['report'])}", markup=False)
    console.print(f"parents: {', '.join(info.parents) or 'none'}")
    histogram = (info.stats or {}).get("histogram", {})
    if histogram:
        table = Table("length (tokens)", "rows", title="length histogram")
        for bucket, count in histogram.items():
            table.add_row(bucket, str(count))
        console.print(table)


@app.command("export")
def export(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    output: Path = typer.Option(..., "--output", "-o", help="A .jsonl or .parquet file."),
) -> None:
    """Write a version's rows to a JSONL or Parquet file."""
    store = _store(ctx)
    rows = store.rows(ref)
    if output.suffix == ".parquet":
        count = write_parquet(rows, output)
    elif output.suffix in (".jsonl", ".ndjson"):
        count = write_jsonl(rows, output)
    else:
        raise InvalidInput("--output must end in .jsonl or .parquet", param="output")
    console.print(f"wrote {count} rows to {output}")
