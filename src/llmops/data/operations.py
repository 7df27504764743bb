"""Dataset operations that produce new versions: ingest, synthesise, transform, split.

Each operation reads its input (a file, a generator, or a parent version), applies one step and
commits the result as a new content-addressed version whose record names the step, its parameters,
its report and its parent versions: that chain is the dataset's lineage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.data import cleaning, synth
from llmops.data.cleaning import PIIDetector, TransformReport
from llmops.data.readers import read_rows
from llmops.data.schemas import Row, SchemaKind, parse_kind, row_text
from llmops.data.split import SplitFractions, split_rows
from llmops.data.versions import DatasetStore, DatasetVersionInfo
from llmops.errors import InvalidInput

TokenCounter = Callable[[str], int]
TRANSFORMS = ("normalize", "dedup-exact", "dedup-near", "filter-length", "scrub-pii")


def whitespace_tokens(text: str) -> int:
    return len(text.split())


def length_stats(
    rows: Sequence[Row], kind: SchemaKind, count: TokenCounter = whitespace_tokens
) -> dict[str, Any]:
    """Token totals and a length histogram (power-of-two buckets) for ``data show``."""
    lengths = [count(row_text(row, kind)) for row in rows]
    buckets: Counter[str] = Counter()
    for n in lengths:
        upper = 1
        while upper < n:
            upper *= 2
        buckets[f"<={upper}"] += 1
    ordered = dict(sorted(buckets.items(), key=lambda item: int(item[0][2:])))
    return {"tokens": sum(lengths), "max_tokens": max(lengths, default=0), "histogram": ordered}


def _commit(
    store: DatasetStore,
    name: str,
    rows: list[Row],
    kind: SchemaKind,
    transform: dict[str, Any],
    parents: Sequence[str] = (),
    source: str | None = None,
) -> DatasetVersionInfo:
    if not rows:
        raise InvalidInput(f"the {transform['name']} step left no rows; loosen its parameters", param="rows")
    stats = length_stats(rows, kind)
    return store.commit(
        name,
        rows,
        kind.value,
        transform=transform,
        parents=parents,
        source=source,
        stats=stats,
        num_tokens=stats["tokens"],
    )


def _with_context(record: dict[str, Any], context: dict[str, str] | None) -> dict[str, Any]:
    """The step record, plus what produced it (a pipeline run) when there is such a context."""
    return {**record, "context": dict(context)} if context else record


def ingest(
    store: DatasetStore,
    path: Path,
    name: str,
    *,
    kind: str | None = None,
    skip_invalid: bool = False,
    context: dict[str, str] | None = None,
) -> tuple[DatasetVersionInfo, int]:
    """Read a JSONL, CSV or Parquet file into a new version; returns it and the skipped count."""
    result = read_rows(path, kind, skip_invalid)
    transform = {
        "name": "ingest",
        "params": {"file": result.source, "skip_invalid": skip_invalid},
        "report": {"rows_out": len(result.rows), "skipped": result.skipped},
    }
    transform = _with_context(transform, context)
    info = _commit(store, name, result.rows, result.kind, transform, source=result.source)
    return info, result.skipped


def synthesise(
    store: DatasetStore,
    task: str,
    name: str,
    *,
    n: int,
    seed: int,
    domain: str,
    context: dict[str, str] | None = None,
) -> DatasetVersionInfo:
    if n < 1:
        raise InvalidInput("--n must be at least 1", param="n")
    rows = synth.generate(task, n, seed, domain)
    params = {"task": task, "n": n, "seed": seed, "domain": domain}
    transform = _with_context({"name": "synth", "params": params}, context)
    return _commit(store, name, rows, SchemaKind.PROMPT_COMPLETION, transform, source=f"synth:{task}")


def transform(
    store: DatasetStore,
    ref: str,
    step: str,
    name: str | None = None,
    *,
    params: dict[str, Any] | None = None,
    detector: PIIDetector | None = None,
    count_tokens: TokenCounter = whitespace_tokens,
    context: dict[str, str] | None = None,
) -> tuple[DatasetVersionInfo, TransformReport]:
    """Apply one cleaning step to version ``ref``; the result is a new version of ``name``."""
    parent = store.get(ref)
    kind = parse_kind(parent.schema_kind)
    rows = store.rows(parent)
    params = dict(params or {})
    out, report = _apply(step, rows, kind, params, detector, count_tokens)
    record = _with_context({"name": step, "params": params, "report": report.to_dict()}, context)
    return _commit(store, name or parent.name, out, kind, record, parents=[parent.ref]), report


def _apply(
    step: str,
    rows: list[Row],
    kind: SchemaKind,
    params: dict[str, Any],
    detector: PIIDetector | None,
    count_tokens: TokenCounter,
) -> tuple[list[Row], TransformReport]:
    if step == "normalize":
        return cleaning.normalize(rows, kind, **params)
    if step == "dedup-exact":
        return cleaning.dedup_exact(rows, kind)
    if step == "dedup-near":
        return cleaning.dedup_near(rows, kind, **params)
    if step == "filter-length":
        return cleaning.filter_length(rows, kind, count_tokens, **params)
    if step == "scrub-pii":
        if detector is None:
            raise InvalidInput("scrub-pii needs a PII detector", param="detector")
        return cleaning.scrub_pii(rows, kind, detector)
    raise InvalidInput(f"unknown transform {step!r}; use one of: {', '.join(TRANSFORMS)}", param="step")


@dataclass(frozen=True)
class SplitVersions:
    train: DatasetVersionInfo
    validation: DatasetVersionInfo | None
    test: DatasetVersionInfo | None


def split(
    store: DatasetStore,
    ref: str,
    *,
    seed: int,
    key: str | None,
    fractions: SplitFractions,
    context: dict[str, str] | None = None,
) -> SplitVersions:
    """Deterministic split of ``ref`` into ``NAME-train``, ``NAME-validation`` and ``NAME-test``."""
    parent = store.get(ref)
    kind = parse_kind(parent.schema_kind)
    rows = store.rows(parent)
    if key is not None and any(key not in row for row in rows[:100]):
        raise InvalidInput(f"split key {key!r} is not a field of {parent.ref}", param="key")
    parts = split_rows(rows, seed=seed, key=key, fractions=fractions)
    params = {"seed": seed, "key": key, "fractions": [fractions.train, fractions.validation, fractions.test]}
    made: dict[str, DatasetVersionInfo | None] = {}
    for part in ("train", "validation", "test"):
        part_rows = parts.rows(part)
        record = _with_context({"name": "split", "params": {**params, "part": part}}, context)
        made[part] = (
            _commit(store, f"{parent.name}-{part}", part_rows, kind, record, parents=[parent.ref])
            if part_rows
            else None
        )
    if made["train"] is None:
        raise InvalidInput("the split left no training rows; raise the train fraction", param="fractions")
    return SplitVersions(made["train"], made["validation"], made["test"])


def from_request_log(
    store: DatasetStore,
    name: str,
    *,
    deployment: str | None = None,
    model_version: str | None = None,
    only_ok: bool = True,
    limit: int = 100_000,
) -> DatasetVersionInfo:
    """Build a prompt/completion dataset from logged requests (with ``user`` and ``request_id``,
    so privacy erasure can find a person's rows later)."""
    from sqlalchemy import select

    from llmops.store.schema import GatewayRequest

    query = select(GatewayRequest).where(GatewayRequest.shadow_of.is_(None)).order_by(GatewayRequest.ts)
    if deployment is not None:
        query = query.where(GatewayRequest.deployment == deployment)
    if model_version is not None:
        query = query.where(GatewayRequest.model_version == model_version)
    if only_ok:
        query = query.where(GatewayRequest.status == 200)
    from llmops.security.payload_crypto import PayloadCipher, revealer

    reveal = revealer(PayloadCipher.from_settings())  # payloads may be encrypted at rest
    with store.store.read() as session:
        logged = session.execute(query.limit(limit)).scalars().all()
        pairs = [(r, reveal(r.prompt), reveal(r.completion)) for r in logged]
        rows: list[Row] = [
            {"prompt": prompt, "completion": completion, "user": r.user, "request_id": r.id}
            for r, prompt, completion in pairs
            if prompt and completion
        ]
    params = {"deployment": deployment, "model_version": model_version, "only_ok": only_ok}
    record = {"name": "from_request_log", "params": params}
    return _commit(store, name, rows, SchemaKind.PROMPT_COMPLETION, record, source="request_log")
