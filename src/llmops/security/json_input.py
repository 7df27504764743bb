"""Strict JSON for untrusted bodies: every parser limit is checked and named, never a 500.

Python's ``json`` module accepts things that break a server further on: nesting deep enough to
exhaust the recursion limit (``RecursionError``), integers past the interpreter's digit limit
(``ValueError``), ``NaN``/``Infinity`` and overflowing floats (not JSON, and re-serialised as
invalid JSON), duplicate keys (the last one silently wins, while another parser may take the
first), UTF-16/32 bodies it detects by itself, and lone surrogates that no database or UTF-8
encoder will store. ``loads_json`` refuses each with ``InvalidInput`` naming what it read (the
request body, a file) and where in it, so the HTTP layers answer 400 and the CLI one line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from llmops.errors import InvalidInput

MAX_DEPTH = 64
MAX_NUMBER_CHARS = 100
_BOM = b"\xef\xbb\xbf"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # \ud800-\udfff, the only way UTF-8 text holds one


class _Refused(Exception):
    """Raised inside the decoder's hooks; turned into ``InvalidInput`` by ``loads_json``."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body = dict(pairs)
    if len(body) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {key!r}; send each field once")
            seen.add(key)
    return body


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number of {len(text)} digits; at most {MAX_NUMBER_CHARS} are accepted")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number of {len(text)} characters; at most {MAX_NUMBER_CHARS} are accepted")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused(f"the number {text[:20]} overflows a 64-bit float")
    return value


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON; send a finite number or null")


# one decoder for every call (``json.loads`` with hooks builds a decoder and its scanner each time)
_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs, parse_int=_int, parse_float=_float, parse_constant=_constant
)


def _children(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}" if path else str(key), item
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield f"{path}[{index}]", item


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused(f"{path or 'a key'} holds a lone surrogate escape (\\ud800-\\udfff)") from None


def _check_tree(root: Any, max_depth: int) -> None:
    """Depth and string checks without recursion (the tree may be as deep as the decoder allowed)."""
    stack: list[tuple[Any, str, int]] = [(root, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value, path)
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth >= max_depth:
            raise _Refused(f"{path or 'the document'} is nested deeper than {max_depth} levels")
        if isinstance(value, dict):
            for key in value:
                _check_text(key, path)
        stack.extend((item, where, depth + 1) for where, item in _children(value, path))


def _needs_tree_check(text: str, decoded: bool, max_depth: int) -> bool:
    """Whether ``_check_tree`` could refuse what ``text`` parses to. It cannot when the text opens
    at most ``max_depth`` objects and arrays (brackets inside strings count too: an over-estimate),
    has no escaped surrogate and, given as ``str``, holds no surrogate itself (UTF-8 decoding never
    yields one): a cheap scan of the text instead of a walk of the tree."""
    if text.count("{") + text.count("[") > max_depth or _SURROGATE_ESCAPE.search(text):
        return True
    return not decoded and not text.isascii()


def loads_json(raw: bytes | str, *, what: str = "the request body", max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``raw`` (UTF-8) strictly; ``InvalidInput`` names ``what`` and the problem."""
    decoded = isinstance(raw, bytes)
    if isinstance(raw, bytes):
        try:
            text = raw.removeprefix(_BOM).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"{what} is not UTF-8 (byte {exc.start}); send JSON encoded as UTF-8",
                param="body",
                code="invalid_encoding",
            ) from None
    else:
        text = raw
    try:
        if text.startswith("\ufeff"):  # what json.loads says of a second byte order mark
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _DECODER.decode(text)
        if _needs_tree_check(text, decoded, max_depth):
            _check_tree(value, max_depth)
    except _Refused as exc:
        raise InvalidInput(f"{what} is refused: {exc}", param="body", code="invalid_json") from None
    except RecursionError:
        message = f"{what} is refused: it is nested deeper than {max_depth} levels"
        raise InvalidInput(message, param="body", code="invalid_json") from None
    except json.JSONDecodeError as exc:
        message = f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise InvalidInput(message, param="body", code="invalid_json") from None
    return value
