"""Property tests: each parser of untrusted text either returns a value or raises ``InvalidInput``
(``YAMLError`` for YAML), for any input; and what it accepts round-trips.

Covers the strict JSON body parser, the bounded YAML loader, model and dataset references, the
gateway's OpenAI request reader, and recipes (fields of the shipped example set to arbitrary values).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmops.data.versions import parse_dataset_ref
from llmops.errors import InvalidInput
from llmops.gateway.openai_request import parse_request
from llmops.registry.references import ModelRef, parse_ref
from llmops.security.json_input import loads_json
from llmops.security.yaml_input import load_yaml
from llmops.train.recipe import parse_recipe

RECIPE = Path(__file__).parents[2] / "examples" / "support-desk" / "recipe.yaml"
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20)
finite = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    scalars | finite,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
hostile_text = st.text() | st.sampled_from(
    ["9" * 5000, "a@" + "9" * 5000, "\ud800", "a@²", "a@٣", "@", "a@", "a@@b", " a@1 ", "a@\x00"]
)


OPENAI_FIELDS = ["model", "messages", "prompt", "stream", "max_tokens", "user", "stream_options", "n"]


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


@PROPERTY
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_loads_json_returns_or_refuses_any_bytes(raw: bytes) -> None:
    try:
        loads_json(raw)
    except InvalidInput as exc:
        assert exc.param == "body" and "the request body" in exc.message


@PROPERTY
@given(json_values)
def test_loads_json_round_trips_what_json_writes(value: Any) -> None:
    text = json.dumps(value)
    assert loads_json(text.encode()) == json.loads(text)


@PROPERTY
@given(st.text(max_size=200))
def test_load_yaml_returns_or_refuses_any_text(text: str) -> None:
    with contextlib.suppress(yaml.YAMLError):
        load_yaml(text)


@PROPERTY
@given(json_values)
def test_load_yaml_round_trips_what_yaml_writes(value: Any) -> None:
    text = yaml.safe_dump(value)
    assert _equal(load_yaml(text), yaml.safe_load(text))


@PROPERTY
@given(hostile_text)
def test_model_references_parse_or_refuse(text: str) -> None:
    try:
        ref = parse_ref(text)
    except InvalidInput as exc:
        assert exc.param in {"model", "alias"}
        return
    assert isinstance(ref, ModelRef) and parse_ref(str(ref)) == ref


@PROPERTY
@given(hostile_text)
def test_dataset_references_parse_or_refuse(text: str) -> None:
    try:
        name, version = parse_dataset_ref(text)
    except InvalidInput as exc:
        assert exc.param == "dataset"
        return
    again = parse_dataset_ref(name if version is None else f"{name}@{version}")
    assert again == (name, version)


@PROPERTY
@given(st.dictionaries(st.sampled_from(OPENAI_FIELDS), json_values))
def test_openai_requests_parse_or_refuse(body: dict[str, Any]) -> None:
    for endpoint in ("chat", "completions"):
        try:
            parsed = parse_request(json.dumps(body).encode(), endpoint)  # type: ignore[arg-type]
        except InvalidInput as exc:
            assert exc.message
            continue
        assert parsed.model == body["model"]


def _recipe_paths(recipe: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, value in recipe.items():
        paths.append((*prefix, key))
        if isinstance(value, dict):
            paths += _recipe_paths(value, (*prefix, key))
    return paths


BASE_RECIPE: dict[str, Any] = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_recipe_paths(BASE_RECIPE)), json_values | hostile_text)
def test_recipe_fields_set_to_anything_parse_or_name_the_field(path: tuple[str, ...], value: Any) -> None:
    recipe = json.loads(json.dumps(BASE_RECIPE))
    target = recipe
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    try:
        parsed = parse_recipe(recipe, source="recipe.yaml")
    except InvalidInput as exc:
        assert exc.message.startswith("recipe.yaml: field '"), exc.message
        return
    assert parse_recipe(parsed.model_dump(mode="json", by_alias=True), source="again") == parsed
