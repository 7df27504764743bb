"""A strict safetensors header validator that reads at most the header, never the tensors.

File layout: an 8-byte little-endian header length ``N``, ``N`` bytes of JSON, then the data
section. The JSON maps tensor names to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets
relative to the data section) plus an optional ``__metadata__`` map of strings. A hostile file can
claim an absurd ``N`` (to make a reader allocate it), offsets past the end (out-of-bounds reads),
overlapping tensors (two names aliasing one buffer), holes that smuggle bytes, or duplicate keys that
two JSON parsers resolve differently. Each of these is refused with ``InvalidInput`` naming the
problem, after reading 8 bytes for the length checks and at most ``max_header_bytes`` after that.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops.errors import InvalidInput

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the limit the safetensors library itself enforces
# Bits per element of every dtype the safetensors format defines.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "C64": 64,
    "I64": 64, "U64": 64, "F64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip
ENTRY_KEYS = frozenset({"dtype", "shape", "data_offsets"})


@dataclass(frozen=True)
class TensorEntry:
    """One tensor's header entry; ``start``/``end`` are byte offsets into the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated header: every tensor in bounds, no overlaps, no holes, the data section covered."""

    path: Path
    header_size: int
    data_size: int
    tensors: tuple[TensorEntry, ...]
    metadata: dict[str, str] = field(default_factory=dict)


def _refuse(path: Path, problem: str) -> InvalidInput:
    return InvalidInput(f"{path.name} is not a valid safetensors file: {problem}", param="path")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"duplicate key {duplicate!r} in the header")
    return dict(pairs)


def _read_header_json(path: Path, max_header_bytes: int) -> tuple[dict[str, Any], int, int]:
    """The parsed header, its length and the data section's size; checks lengths before reading."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise _refuse(path, f"{size} bytes is shorter than the 8-byte header length")
        length = int.from_bytes(prefix, "little")
        if length > max_header_bytes:
            raise _refuse(path, f"header length {length} exceeds the {max_header_bytes}-byte cap")
        if length > size - 8:
            raise _refuse(path, f"header length {length} runs past the end of the {size}-byte file")
        if length < 2:
            raise _refuse(path, f"header length {length} is too short for a JSON object")
        raw = handle.read(length)
    if not raw.startswith(b"{"):
        raise _refuse(path, "the header does not start with a JSON object ('{')")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _refuse(path, f"the header is not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise _refuse(path, "the header must be a JSON object")
    return header, length, size - 8 - length


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_entry(path: Path, name: str, entry: object) -> TensorEntry:
    if not isinstance(entry, dict) or set(entry) != ENTRY_KEYS:
        raise _refuse(path, f"tensor {name!r} must have exactly the keys dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_BITS:
        raise _refuse(path, f"tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise _refuse(path, f"tensor {name!r} shape must be a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
        raise _refuse(path, f"tensor {name!r} data_offsets must be two integers [begin, end]")
    start, end = offsets
    if not 0 <= start <= end:
        raise _refuse(path, f"tensor {name!r} has data_offsets [{start}, {end}]: need 0 <= begin <= end")
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != end - start:
        raise _refuse(
            path,
            f"tensor {name!r}: {dtype} {shape} needs {bits / 8:g} bytes but data_offsets span {end - start}",
        )
    return TensorEntry(name, dtype, tuple(shape), start, end)


def _check_layout(path: Path, tensors: list[TensorEntry], data_size: int) -> None:
    """Sorted by offset, the tensors must tile the data section exactly: from 0, no overlap, no gap."""
    cursor, previous = 0, None
    for tensor in sorted(tensors, key=lambda t: (t.start, t.end)):
        if tensor.end > data_size:
            raise _refuse(
                path,
                f"tensor {tensor.name!r} ends at byte {tensor.end}, beyond the {data_size}-byte data section",
            )
        if tensor.start < cursor:
            raise _refuse(
                path, f"tensors {previous!r} and {tensor.name!r} overlap (bytes {tensor.start}-{cursor})"
            )
        if tensor.start > cursor:
            raise _refuse(path, f"bytes {cursor}-{tensor.start} of the data section belong to no tensor")
        cursor, previous = tensor.end, tensor.name
    if cursor != data_size:
        raise _refuse(path, f"{data_size - cursor} trailing bytes after the last tensor belong to no tensor")


def read_safetensors_header(path: Path, *, max_header_bytes: int = MAX_HEADER_BYTES) -> SafetensorsHeader:
    """Validate ``path``'s safetensors header; raise ``InvalidInput`` naming the first problem."""
    path = Path(path)
    header, header_size, data_size = _read_header_json(path, max_header_bytes)
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise _refuse(path, "__metadata__ must map strings to strings")
    tensors = [_parse_entry(path, name, entry) for name, entry in header.items()]
    _check_layout(path, tensors, data_size)
    return SafetensorsHeader(path, header_size, data_size, tuple(tensors), metadata)
