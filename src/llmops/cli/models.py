"""`llmops models`: register, list, show, alias, lineage, model cards, quantise and compare."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from rich.text import Text

from llmops.cli.context import console, err_console, home_of, print_json
from llmops.registry import Registry
from llmops.registry.cards import render_card
from llmops.registry.lineage import DatasetNode, lineage
from llmops.train.input_format import InputFormat, read_input_format

if TYPE_CHECKING:
    from llmops.evals.tradeoff import TradeoffRecord

app = typer.Typer(help="Model registry: versions, aliases, lineage, cards.", no_args_is_help=True)
alias_app = typer.Typer(
    help="Move or remove aliases (production, staging, canary, ...).", no_args_is_help=True
)
app.add_typer(alias_app, name="alias")


def _registry(ctx: typer.Context) -> Registry:
    return Registry.from_home(home_of(ctx))


@app.command("register")
def register(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="A directory saved with save_pretrained (safetensors weights)."),
    name: str = typer.Option(..., "--name", help="Registered model name."),
    description: str | None = typer.Option(None, help="What this version is."),
    base: str | None = typer.Option(None, help="Base version reference (required for a PEFT adapter)."),
    run: str | None = typer.Option(None, "--run", help="Tracking run that produced it."),
    reason: str | None = typer.Option(None, help="Why, for the audit log."),
) -> None:
    """Register a model directory as the next version of NAME (with its input_format.json, if any)."""
    recorded = read_input_format(path) if path.is_dir() else None
    tags = {"input_format": recorded.model_dump(mode="json")} if recorded else None
    version = _registry(ctx).register(
        path, name, description=description, base=base, source_run_id=run, reason=reason, tags=tags
    )
    console.print(f"registered {version.ref} ({version.format}, digest {version.digest[:12]})")


@app.command("quantize")
def quantize(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="Source version: name, name@VERSION or name@ALIAS."),
    method: str = typer.Option(
        ..., "--method", help="int8-dynamic | int8-weight-only | int4-weight-only (CPU kernels)."
    ),
    name: str | None = typer.Option(None, "--name", help="Registered name (default: <source>-<method>)."),
    group_size: int = typer.Option(32, "--group-size", help="Weights per scale for int4 (32/64/128/256)."),
    reason: str | None = typer.Option(None, help="Why, for the audit log."),
) -> None:
    """Quantise the linear layers of a version; register the result with lineage to its source."""
    from llmops.train.quantize_version import quantize_version

    result = quantize_version(_registry(ctx), ref, method, name=name, group_size=group_size, reason=reason)
    console.print(
        f"registered {result.version.ref} ({result.method}, {result.layers} linear layers) from "
        f"{result.source.ref}: weight memory {_mib(result.weight_bytes)} vs "
        f"{_mib(result.source_weight_bytes)} ({result.weight_ratio:.3f}x), "
        f"on disk {_mib(result.disk_bytes)} ({result.disk_ratio:.3f}x)",
        markup=False,
    )


def _mib(size: float) -> str:
    return f"{size / 2**20:.2f} MiB"


@app.command("compare")
def compare(
    ctx: typer.Context,
    candidate: str = typer.Argument(..., help="The optimised version, e.g. demo-int8-dynamic@1."),
    baseline: str = typer.Argument(..., help="The version it is measured against (its source)."),
    measure: bool = typer.Option(
        False,
        "--measure",
        help="Evaluate and benchmark now and store the record (else print the stored one).",
    ),
    suite: Path | None = typer.Option(
        None, "--suite", help="Suite YAML (default: the suite of the baseline's latest evaluation run)."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Evaluate only the first N examples."),
    speed: bool = typer.Option(True, "--speed/--no-speed", help="With --measure: benchmark serving too."),
    requests: int = typer.Option(4, "--requests", min=1, help="Single-stream requests per model."),
    concurrency: int = typer.Option(32, "--concurrency", min=1, help="Requests at once for throughput/TTFT."),
    max_tokens: int = typer.Option(16, "--max-tokens", min=2, help="Tokens generated per request."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads of the engine."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The trade-off table of CANDIDATE against BASELINE: quality with intervals, speed and memory ratios."""
    from llmops.evals.serving_bench import ServingSettings
    from llmops.evals.tradeoff import measure_tradeoff, stored_tradeoff

    home = home_of(ctx)
    if measure:
        settings = ServingSettings(requests, concurrency, max_tokens, threads) if speed else None
        record = measure_tradeoff(home, candidate, baseline, suite=suite, limit=limit, serving=settings)
    else:
        record = stored_tradeoff(home, candidate, baseline)
    if json_out:
        print_json(record.to_json())
        return
    _print_tradeoff(record)


def _print_tradeoff(record: TradeoffRecord) -> None:
    from llmops.evals.tradeoff import SERVING_ROWS

    console.print(f"{record.candidate} against {record.baseline}", markup=False)
    if record.note:
        console.print(record.note, markup=False)
    if record.quality:
        table = Table(
            "metric",
            "baseline",
            "candidate",
            "difference",
            "interval",
            "p",
            "verdict",
            title=f"quality on suite {record.suite}",
        )
        for row in record.quality:
            interval = (
                f"[{row['low']:+.3f}, {row['high']:+.3f}] ({row['confidence']:.0%})"
                if row.get("low") is not None
                else "-"
            )
            table.add_row(
                row["metric"],
                _num(row["baseline"]),
                _num(row["candidate"]),
                _num(row["difference"], "+"),
                Text(interval),
                _num(row["p_value"]),
                str(row.get("verdict") or row.get("error") or "-"),
            )
        console.print(table)
    if record.serving:
        concurrency = record.settings.get("concurrency", 0)
        table = Table("measure", "baseline", "candidate", "ratio", title="serving (same run)")
        for key, label, _higher in SERVING_ROWS:
            base = record.serving["baseline"].get(key)
            cand = record.serving["candidate"].get(key)
            ratio = record.ratio(key)
            table.add_row(
                label.format(concurrency=concurrency),
                _serving_cell(key, base),
                _serving_cell(key, cand),
                f"{ratio:.3f}x" if ratio is not None else "-",
            )
        console.print(table)


def _serving_cell(key: str, value: float | None) -> str:
    if value is not None and key.endswith("_bytes"):
        return _mib(value)
    return _num(value)


def _num(value: object, sign: str = "") -> str:
    if value is None:
        return "-"
    assert isinstance(value, int | float)
    return f"{value:{sign}.4g}"


@app.command("list")
def list_models(ctx: typer.Context) -> None:
    """List registered models with their latest version and aliases."""
    table = Table("name", "versions", "latest", "aliases")
    for model in _registry(ctx).list_models():
        aliases = ", ".join(f"{a}→{v}" for a, v in model.aliases.items())
        table.add_row(model.name, str(model.versions), str(model.latest_version or "-"), aliases)
    console.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name, name@VERSION or name@ALIAS."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one model version."""
    version = _registry(ctx).get(ref)
    if json_out:
        print_json(version)
        return
    table = Table("field", "value", title=version.ref, show_header=False)
    rows = {
        "format": version.format,
        "digest": version.digest,
        "aliases": ", ".join(version.aliases) or "-",
        "base": version.base or "-",
        "source run": version.source_run_id or "-",
        "datasets": ", ".join(f"{d.dataset}@{d.version} ({d.role})" for d in version.datasets) or "-",
        "metrics": ", ".join(f"{k}={v}" for k, v in sorted(version.metrics.items())) or "-",
        "creator": version.creator,
        "created": version.created_at.isoformat(timespec="seconds"),
        "description": version.description or "-",
        "input": _input_format(version.tags.get("input_format")),
    }
    quantized = version.tags.get("quantization")
    if isinstance(quantized, dict):
        rows["quantization"] = _quantization(quantized)
    for key, value in rows.items():
        table.add_row(key, Text(value))  # plain text: values hold brackets and token markers
    console.print(table)


@alias_app.command("set")
def alias_set(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name."),
    alias: str = typer.Argument(..., help="Alias to move, e.g. production."),
    version: int = typer.Argument(..., help="Version number it should point to."),
    reason: str | None = typer.Option(None, help="Why, for the audit log."),
) -> None:
    """Point ALIAS of NAME at VERSION (audited)."""
    move = _registry(ctx).set_alias(name, alias, version, reason)
    console.print(f"{name}@{alias}: {move.before if move.before is not None else '-'} → {move.after}")


@alias_app.command("delete")
def alias_delete(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name."),
    alias: str = typer.Argument(..., help="Alias to remove."),
    reason: str | None = typer.Option(None, help="Why, for the audit log."),
) -> None:
    """Remove ALIAS from NAME (audited)."""
    move = _registry(ctx).delete_alias(name, alias, reason)
    console.print(f"{name}@{alias} removed (was {move.before})")


def _quantization(record: dict[str, object]) -> str:
    """The ``quantization`` tag ``models quantize`` records, in one line."""
    weights, source = record.get("weight_bytes"), record.get("source_weight_bytes")
    ratio = (
        f", weight memory {weights / source:.3f}x of the source"
        if (isinstance(weights, int) and isinstance(source, int) and source)
        else ""
    )
    return f"{record.get('method')} of {record.get('source')} ({record.get('layers')} linear layers{ratio})"


def _input_format(recorded: object) -> str:
    """How the version expects its input, from the tag its training recorded."""
    if recorded is None:
        return "not recorded: bos + prompt; conversations through the tokenizer's chat template"
    try:
        return InputFormat.model_validate(recorded).describe()
    except ValueError:
        return f"unreadable record: {recorded}"


@app.command("lineage")
def show_lineage(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name, name@VERSION or name@ALIAS."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What produced a version (run, datasets, base chain) and what descends from it."""
    info = lineage(_registry(ctx), ref)
    if json_out:
        print_json(info)
        return
    console.print(f"{info.version.ref} ({info.version.format}, digest {info.version.digest[:12]})")
    if info.run:
        console.print(f"  run: {info.run.id} ({info.run.name}, {info.run.experiment}, {info.run.status})")
    for node in info.datasets:
        _print_dataset(node, 1)
    for ancestor in info.ancestors:
        console.print(f"  base: {ancestor.ref} (digest {ancestor.digest[:12]})")
    for child in info.descendants:
        console.print(f"  descendant: {child}")


def _print_dataset(node: DatasetNode, depth: int) -> None:
    role = f" [{node.role}]" if node.role else ""
    console.print(
        f"{'  ' * depth}dataset: {node.name}@{node.version}{role} {node.num_rows} rows "
        f"digest {node.digest[:12]}",
        markup=False,
    )
    for parent in node.parents:
        _print_dataset(parent, depth + 1)


@app.command("keygen")
def keygen(
    path: Path = typer.Argument(..., help="Where to write the private key (the .pub goes beside it)."),
) -> None:
    """Create an Ed25519 signing key pair for model versions."""
    from llmops.security.signing import generate_key

    console.print(f"wrote {path} (private, mode 0600) and {generate_key(path)} (public)")


@app.command("sign")
def sign(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name, name@VERSION or name@ALIAS."),
    key: Path = typer.Option(..., "--key", help="Ed25519 private key (PEM)."),
) -> None:
    """Sign a version's manifest digest (audited); deployments can require the signature."""
    from llmops.registry.signatures import sign_version

    version = sign_version(_registry(ctx), ref, key)
    console.print(f"signed {version.ref} with key {version.tags['signature']['key_id']}")


@app.command("verify")
def verify(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name, name@VERSION or name@ALIAS."),
    public_key: Path = typer.Option(..., "--public-key", help="Ed25519 public key (PEM)."),
) -> None:
    """Check a version's signature and files; exit 1 if either does not hold."""
    from llmops.errors import IntegrityError
    from llmops.registry.signatures import verify_version

    try:
        version = verify_version(_registry(ctx), ref, public_key)
    except IntegrityError as exc:
        err_console.print(f"not verified: {exc.message}", markup=False)
        raise typer.Exit(1) from None
    console.print(f"{version.ref}: signature and files verified")


@app.command("card")
def card(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name, name@VERSION or name@ALIAS."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the markdown here."),
) -> None:
    """Generate the model card (markdown) from what the registry knows."""
    text = render_card(_registry(ctx), ref)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        console.print(f"wrote {output}")
