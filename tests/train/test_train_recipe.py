"""Recipes: YAML in, typed recipe out; every mistake names the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import llmops.train
from llmops.errors import InvalidInput
from llmops.train.recipe import BaseModelSpec, NewModelSpec, Recipe, load_recipe, parse_recipe

DEMO = Path(llmops.train.__file__).parent / "recipes" / "demo-intent.yaml"


def _write(tmp_path: Path, raw: object) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


TINY_MODEL = {"architecture": "llama", "hidden_size": 32, "num_heads": 4, "num_kv_heads": 2}


def _pretrain() -> dict[str, object]:
    return {
        "kind": "pretrain",
        "model": dict(TINY_MODEL),
        "data": {"train": "d/train", "validation": "d/val", "schema": "text"},
        "tokenizer": {"source": "train", "vocab_size": 300},
        "optim": {"max_steps": 10},
    }


def test_loads_a_pretrain_recipe(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, _pretrain()))
    assert isinstance(recipe.model, NewModelSpec)
    assert recipe.model.hidden_size == 32
    assert recipe.data.row_schema == "text"
    assert recipe.optim.betas == (0.9, 0.95)


def test_unknown_field_names_the_file_and_the_field(tmp_path: Path) -> None:
    raw = _pretrain()
    raw["optim"] = {"max_steps": 10, "learning_rate": 0.1}
    path = _write(tmp_path, raw)
    with pytest.raises(InvalidInput) as caught:
        load_recipe(path)
    assert caught.value.param == "optim.learning_rate"
    assert str(path) in caught.value.message
    assert "unknown field" in caught.value.message


def test_unknown_field_inside_the_model_union_has_a_clean_name() -> None:
    raw = _pretrain()
    raw["model"] = {**TINY_MODEL, "hidden": 8}
    with pytest.raises(InvalidInput) as caught:
        parse_recipe(raw)
    assert caught.value.param == "model.hidden"


def test_a_bad_value_names_its_field() -> None:
    raw = _pretrain()
    raw["optim"] = {"max_steps": 0}
    with pytest.raises(InvalidInput) as caught:
        parse_recipe(raw)
    assert caught.value.param == "optim.max_steps"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "lora"}, "model.base"),
        ({"tokenizer": {"source": "base"}}, "tokenizer.source"),
        ({"lora": {"r": 4}}, "lora"),
        ({"data": {"train": "t", "schema": "text"}, "early_stopping_patience": 2}, "early_stopping_patience"),
    ],
)
def test_sections_must_fit_the_kind(change: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_recipe({**_pretrain(), **change})
    assert caught.value.param == field


def test_lora_recipe_takes_a_base_reference() -> None:
    recipe = parse_recipe(
        {
            "kind": "lora",
            "model": {"base": "tiny-base@1"},
            "data": {"train": "t", "schema": "chat"},
            "lora": {"r": 4, "target_modules": ["q_proj", "k_proj"]},
            "optim": {"max_steps": 3},
        }
    )
    assert isinstance(recipe.model, BaseModelSpec)
    assert recipe.model.base == "tiny-base@1"
    assert recipe.tokenizer.source == "base"
    assert recipe.lora is not None and recipe.lora.target_modules == ["q_proj", "k_proj"]


def test_heads_must_divide_the_width() -> None:
    raw = _pretrain()
    raw["model"] = {**TINY_MODEL, "num_heads": 3}
    with pytest.raises(InvalidInput) as caught:
        parse_recipe(raw)
    assert caught.value.param == "model"
    assert "multiple of num_heads" in caught.value.message


def test_not_yaml_and_missing_file_are_invalid_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed", encoding="utf-8")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_recipe(bad)
    with pytest.raises(InvalidInput, match="cannot read recipe"):
        load_recipe(tmp_path / "absent.yaml")
    with pytest.raises(InvalidInput, match="mapping"):
        load_recipe(_write(tmp_path, ["a", "list"]))


def test_recipe_round_trips_through_json() -> None:
    recipe = parse_recipe(_pretrain())
    again = Recipe.model_validate_json(recipe.model_dump_json(by_alias=True))
    assert again == recipe


def test_every_field_is_described() -> None:
    from llmops.train import recipe as module

    sections = [module.Recipe, module.NewModelSpec, module.BaseModelSpec, module.DataSpec]
    sections += [module.TokenizerSpec, module.LoraSpec, module.OptimSpec]
    undocumented = [
        f"{s.__name__}.{n}" for s in sections for n, f in s.model_fields.items() if not f.description
    ]
    assert undocumented == []


def test_demo_recipe_is_valid() -> None:
    recipe = load_recipe(DEMO)
    assert recipe.kind == "pretrain"
    assert recipe.data.row_schema == "prompt_completion"
