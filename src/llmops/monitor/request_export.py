"""Export the request log (with feedback joined) to JSON Lines or Parquet.

Rows are streamed from the store in batches, so an export of millions of requests needs memory for
one batch only. The file is written next to its target and renamed into place when complete. The
Parquet file has a fixed schema (the request-log columns, and ``feedback`` as a list of structs),
so files from different exports can be read together.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from llmops.errors import InvalidInput
from llmops.monitor.request_search import RequestFilter, RequestView, iter_requests
from llmops.security.payload_crypto import Reveal, default_reveal
from llmops.store.database import Store

ExportFormat = Literal["jsonl", "parquet"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("jsonl", "parquet")
_TIME = pa.timestamp("us", tz="UTC")
_FEEDBACK = pa.struct(
    [
        ("id", pa.string()),
        ("score", pa.float64()),
        ("thumbs", pa.string()),
        ("comment", pa.string()),
        ("corrected_output", pa.string()),
        ("key_id", pa.string()),
        ("created_at", _TIME),
    ]
)
PARQUET_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("ts", _TIME),
        ("key_id", pa.string()),
        ("user", pa.string()),
        ("endpoint", pa.string()),
        ("deployment", pa.string()),
        ("model_version", pa.string()),
        ("arm", pa.string()),
        ("replica", pa.string()),
        ("shadow_of", pa.string()),
        ("stream", pa.bool_()),
        ("prompt", pa.string()),
        ("completion", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("ttft_ms", pa.float64()),
        ("latency_ms", pa.float64()),
        ("status", pa.int64()),
        ("cost_usd", pa.float64()),
        ("cache_hit", pa.bool_()),
        ("error", pa.string()),
        ("feedback", pa.list_(_FEEDBACK)),
    ]
)


def format_of(path: Path, requested: str | None) -> ExportFormat:
    """The export format: ``requested`` if given, else from the file's suffix."""
    name = requested or {".jsonl": "jsonl", ".parquet": "parquet"}.get(path.suffix.lower())
    if name not in EXPORT_FORMATS:
        raise InvalidInput(
            f"unknown export format for {path.name}; pass --format jsonl or parquet (or name the file "
            "*.jsonl or *.parquet)",
            param="format",
        )
    return name


def jsonl_lines(views: Iterable[RequestView]) -> Iterator[str]:
    """One JSON line per request (what ``GET /api/requests/export`` streams)."""
    for view in views:
        yield view.model_dump_json() + "\n"


def _batches(views: Iterable[RequestView], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for view in views:
        batch.append(view.model_dump())
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_parquet(views: Iterable[RequestView], target: Path) -> int:
    count = 0
    with pq.ParquetWriter(target, PARQUET_SCHEMA) as writer:
        for batch in _batches(views, 1000):
            writer.write_table(pa.Table.from_pylist(batch, schema=PARQUET_SCHEMA))
            count += len(batch)
        if count == 0:
            writer.write_table(PARQUET_SCHEMA.empty_table())
    return count


def _write_jsonl(views: Iterable[RequestView], target: Path) -> int:
    count = 0
    with target.open("w", encoding="utf-8") as handle:
        for line in jsonl_lines(views):
            handle.write(line)
            count += 1
    return count


def export_requests(
    store: Store,
    request_filter: RequestFilter,
    path: Path,
    export_format: ExportFormat | None = None,
    reveal: Reveal = default_reveal,
) -> int:
    """Write every request matching ``request_filter`` to ``path``; returns how many were written.
    ``reveal`` shows stored payloads (default: decrypted with this process's payload keys)."""
    path = Path(path)
    chosen = format_of(path, export_format)
    if not path.parent.is_dir():
        raise InvalidInput(f"folder {path.parent} does not exist; create it first", param="out")
    temporary = path.with_name(f".{path.name}.part")
    views = iter_requests(store, request_filter, reveal=reveal)
    try:
        count = _write_parquet(views, temporary) if chosen == "parquet" else _write_jsonl(views, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return count


def parquet_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of an exported Parquet file (for checks and notebooks)."""
    return list(pq.read_table(path).to_pylist())


def jsonl_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of an exported JSON Lines file."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]
