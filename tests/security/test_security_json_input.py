"""Strict JSON: the tree walk is skipped only where it cannot refuse anything; every limit holds."""

from __future__ import annotations

import pytest

from llmops.errors import InvalidInput
from llmops.security.json_input import loads_json


def test_nesting_up_to_the_limit_is_read_and_one_level_more_is_refused() -> None:
    assert loads_json(b"[[[1]]]", max_depth=3) == [[[1]]]
    with pytest.raises(InvalidInput, match="nested deeper than 3 levels"):
        loads_json(b"[[[[1]]]]", max_depth=3)
    with pytest.raises(InvalidInput, match="nested deeper than 2 levels"):
        loads_json(b'{"a":{"b":{"c":1}}}', max_depth=2)


def test_brackets_inside_strings_are_not_nesting() -> None:
    assert loads_json(b'{"a":"[[[[{{{{"}', max_depth=2) == {"a": "[[[[{{{{"}


@pytest.mark.parametrize(
    "raw", [b'{"a":"\\ud800"}', b'{"\\uDFFF":1}', b'{"a":["x","\\udbff"]}', b'{"a":"ok \\uDc00"}']
)
def test_escaped_lone_surrogates_are_refused_in_values_and_keys(raw: bytes) -> None:
    with pytest.raises(InvalidInput, match="lone surrogate"):
        loads_json(raw)


def test_a_surrogate_pair_and_other_escapes_are_read() -> None:
    assert loads_json(b'{"a":"\\ud83d\\ude00 \\u00e9"}') == {"a": "\U0001f600 \xe9"}


def test_text_given_as_str_is_checked_for_surrogates_it_holds_itself() -> None:
    with pytest.raises(InvalidInput, match="lone surrogate"):
        loads_json('{"a":"\ud800"}')
    assert loads_json('{"a":"caf\xe9"}') == {"a": "caf\xe9"}


def test_duplicate_keys_are_refused_on_every_call() -> None:
    for _ in range(2):
        with pytest.raises(InvalidInput, match="duplicate key 'a'"):
            loads_json(b'{"a":1,"a":2}')


def test_a_second_byte_order_mark_is_refused_as_json_does() -> None:
    assert loads_json(b'\xef\xbb\xbf{"a":1}') == {"a": 1}
    with pytest.raises(InvalidInput, match="Unexpected UTF-8 BOM"):
        loads_json(b'\xef\xbb\xbf\xef\xbb\xbf{"a":1}')
