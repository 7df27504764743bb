"""Reading dataset files (JSONL, CSV, Parquet) into validated rows, and writing rows back out.

This module owns file formats only: which extensions are supported, how each is parsed with the
line (or Parquet row) number of every row, and how malformed input is reported or skipped. What a
valid row is lives in ``schemas``. Error messages name the file by its base name, never a full path.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from llmops.data.schemas import Row, SchemaKind, detect_kind, parse_kind, validate_row
from llmops.errors import InvalidInput, NotFound

FORMATS: dict[str, str] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
# Parquet has no lines; its positions are 1-based row numbers.
_UNITS: dict[str, str] = {"jsonl": "line", "csv": "line", "parquet": "row"}
# Long documents are common in text datasets; the csv module's default cap is 128 KiB per field.
_CSV_FIELD_LIMIT = 64 * 1024 * 1024
MAX_SKIPPED_REASONS = 100


@dataclass(frozen=True)
class RawRow:
    """One parsed row before schema checks, or the reason it could not be parsed."""

    line: int
    row: Row | None
    error: InvalidInput | None = None


@dataclass
class ReadResult:
    """Rows of one file that passed the schema, with their positions and what was skipped.

    ``lines[i]`` is the line (Parquet: row) number of ``rows[i]``. ``skipped_reasons`` keeps the
    first ``MAX_SKIPPED_REASONS`` reasons; ``skipped`` counts them all.
    """

    source: str
    kind: SchemaKind
    rows: list[Row]
    lines: list[int]
    skipped: int = 0
    skipped_reasons: list[str] = field(default_factory=list)


def file_format(path: Path) -> str:
    """The format name for ``path``'s extension; unknown extensions raise ``InvalidInput``."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        supported = ", ".join(sorted(FORMATS))
        raise InvalidInput(
            f"{path.name}: unsupported file type {path.suffix or '(none)'!r}; use one of: {supported}",
            param="path",
        )
    return fmt


def _iter_jsonl(path: Path) -> Iterator[RawRow]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            yield _parse_json_line(raw, path.name, number)


def _parse_json_line(raw: bytes, source: str, number: int) -> RawRow:
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return RawRow(
            number, None, InvalidInput(f"{source}, line {number}: not valid UTF-8; re-save as UTF-8")
        )
    except json.JSONDecodeError as exc:
        message = (
            f"{source}, line {number}: malformed JSON ({exc.msg} at column {exc.colno}); fix or remove it"
        )
        return RawRow(number, None, InvalidInput(message, param="line"))
    if not isinstance(value, dict):
        message = f"{source}, line {number}: expected a JSON object, got {type(value).__name__}"
        return RawRow(number, None, InvalidInput(message, param="line"))
    return RawRow(number, value)


def _decode_csv_messages(row: Row, source: str, number: int) -> RawRow:
    """CSV cells are strings; a chat ``messages`` cell holds the message list as JSON."""
    try:
        row["messages"] = json.loads(row["messages"])
    except json.JSONDecodeError as exc:
        message = (
            f"{source}, line {number}: field 'messages' is not a JSON list ({exc.msg}); write it as JSON"
        )
        return RawRow(number, None, InvalidInput(message, param="messages"))
    return RawRow(number, row)


def _iter_csv(path: Path) -> Iterator[RawRow]:
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            end_of_previous = 1  # the header is line 1
            for record in reader:
                start, end_of_previous = end_of_previous + 1, reader.line_num
                yield _csv_record(record, path.name, start)
    except UnicodeDecodeError:
        raise InvalidInput(f"{path.name}: not valid UTF-8; re-save the CSV as UTF-8", param="path") from None
    except csv.Error as exc:
        raise InvalidInput(f"{path.name}: malformed CSV ({exc}); check quoting", param="path") from None


def _csv_record(record: dict[Any, Any], source: str, number: int) -> RawRow:
    if None in record:
        message = f"{source}, line {number}: more fields than the header has; quote fields with commas"
        return RawRow(number, None, InvalidInput(message, param="line"))
    row: Row = {key: value for key, value in record.items() if value is not None}
    if isinstance(row.get("messages"), str):
        return _decode_csv_messages(row, source, number)
    return RawRow(number, row)


def _iter_parquet(path: Path) -> Iterator[RawRow]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"{path.name}: not a readable Parquet file ({exc})", param="path") from None
    number = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            yield RawRow(number, row)


def iter_raw_rows(path: Path) -> Iterator[RawRow]:
    """Parse ``path`` row by row without schema checks (format chosen by extension)."""
    fmt = file_format(path)
    if not path.is_file():
        raise NotFound(f"dataset file {str(path)!r} does not exist; check the path", param="path")
    if fmt == "jsonl":
        return _iter_jsonl(path)
    if fmt == "csv":
        return _iter_csv(path)
    return _iter_parquet(path)


def read_rows(
    path: str | Path, kind: SchemaKind | str | None = None, skip_invalid: bool = False
) -> ReadResult:
    """Read and validate every row of a JSONL, CSV or Parquet file.

    ``kind`` defaults to what the first row's keys say. With ``skip_invalid`` malformed or invalid
    rows are counted and skipped; without it the first one raises ``InvalidInput`` naming the file,
    line and field. A file with no valid rows always raises.
    """
    path = Path(path)
    unit = _UNITS[file_format(path)]
    wanted = parse_kind(kind) if kind is not None else None
    rows: list[Row] = []
    lines: list[int] = []
    reasons: list[str] = []
    skipped = 0
    for raw in iter_raw_rows(path):
        if wanted is None and raw.error is None:
            wanted = _detect(raw, path.name, unit)
        try:
            if raw.error is not None:
                raise raw.error
            assert wanted is not None  # set above from the first parsed row
            rows.append(validate_row(raw.row, wanted, source=path.name, line=raw.line, unit=unit))
            lines.append(raw.line)
        except InvalidInput as exc:
            if not skip_invalid:
                raise
            skipped += 1
            if len(reasons) < MAX_SKIPPED_REASONS:
                reasons.append(exc.message)
    if not rows:
        _raise_empty(path.name, skipped, reasons)
    assert wanted is not None  # set by the first row that was read
    return ReadResult(path.name, wanted, rows, lines, skipped, reasons)


def _detect(raw: RawRow, source: str, unit: str) -> SchemaKind:
    try:
        return detect_kind([raw.row], source=f"{source}, {unit} {raw.line}")
    except InvalidInput as exc:
        raise InvalidInput(f"{exc.message}; or name the kind explicitly", param="kind") from None


def _raise_empty(source: str, skipped: int, reasons: list[str]) -> None:
    if skipped:
        raise InvalidInput(
            f"{source}: none of its {skipped} rows is valid; the first: {reasons[0]}", param="path"
        )
    raise InvalidInput(f"{source}: the file has no rows; add at least one", param="path")


def _replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary sibling, then rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_jsonl(rows: Iterable[Row], path: str | Path) -> int:
    """Write rows as UTF-8 JSON Lines (key order kept); return how many were written."""
    count = 0

    def write(target: Path) -> None:
        nonlocal count
        with target.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1

    _replace_atomically(Path(path), write)
    return count


def write_parquet(rows: Iterable[Row], path: str | Path) -> int:
    """Write rows as a Parquet file (columns inferred by pyarrow); return how many were written."""
    path = Path(path)
    try:
        table = pa.Table.from_pylist(list(rows))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(
            f"{path.name}: rows cannot be stored as Parquet ({exc}); give each field one type", param="rows"
        ) from None
    _replace_atomically(path, lambda target: pq.write_table(table, target))
    return int(table.num_rows)
