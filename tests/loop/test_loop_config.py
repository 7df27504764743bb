"""loop.yaml: shape errors name the field path; unknown store references are refused at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.loop.conftest import LoopWorld

from llmops.deploy.spec import load_spec
from llmops.errors import InvalidInput, LLMOpsError
from llmops.loop.config import DriftTrigger, load_config, parse_config
from llmops.loop.preflight import check_config
from llmops.train.recipe import load_recipe


def test_a_valid_config_resolves_paths_and_references(world: LoopWorld) -> None:
    config = load_config(world.write_config(triggers=[{"kind": "drift", "cooldown": "6h", "window": "2h"}]))
    assert config.loop_name == "bot" and config.champion_ref == "bot@production"
    trigger = config.triggers[0]
    assert isinstance(trigger, DriftTrigger) and trigger.cooldown == 6 * 3600 and trigger.window == 7200
    assert config.gate.suite == world.root / "suite.yaml"
    checked = check_config(world.home, config)
    assert checked.champion.ref == "bot@1"
    assert checked.suite.name == "original"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"triggers": [{"kind": "drift", "cooldown": "soon"}]}, "triggers[0].cooldown"),
        ({"triggers": [{"kind": "quality_drop", "source": "online_eval"}]}, "triggers[0]"),
        ({"triggers": [{"kind": "schedule", "every": "1d", "colldown": 3}]}, "triggers[0].colldown"),
        ({"triggers": [{"kind": "weather"}]}, "triggers[0]"),
        ({"triggers": []}, "triggers"),
        ({"curation": {"labels": []}}, "curation.labels"),
        ({"rollout": {"steps": [{"weight": 50}, {"weight": 10}]}}, "rollout"),
        # MinHash LSH cannot band a threshold of 1 (exact duplicates are `exact: true`)
        (
            {"curation": {"labels": [{"kind": "corrections"}], "dedup": {"near_threshold": 1}}},
            "curation.dedup.near_threshold",
        ),
    ],
)
def test_shape_errors_name_the_field(world: LoopWorld, change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_config({**world.config, **change})
    assert caught.value.param == field
    assert field in caught.value.message


def test_two_triggers_of_one_kind_need_names(world: LoopWorld) -> None:
    twice = [{"kind": "schedule", "every": "1d"}, {"kind": "schedule", "every": "2d"}]
    with pytest.raises(InvalidInput, match="used twice"):
        parse_config({**world.config, "triggers": twice})
    named = [{**twice[0], "name": "daily"}, {**twice[1], "name": "every-other"}]
    assert len(parse_config({**world.config, "triggers": named}).triggers) == 2


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"deployment": "bott"}, "deployment", "Did you mean: bot"),
        ({"model": "robot"}, "model", "robot@production"),
        (
            {"curation": {"labels": [{"kind": "corrections"}], "replay": {"dataset": "orig-trian@1"}}},
            "curation.replay.dataset",
            "orig-trian",
        ),
        ({"gate": {"suite": "suite.yaml", "metric": "bleu"}}, "gate.metric", "exact_match"),
        ({"gate": {"suite": "nowhere.yaml", "metric": "exact_match"}}, "gate.suite", "nowhere.yaml"),
        ({"retrain": {"recipe": "recipe.yaml", "method": "lora"}}, "retrain.method", "lora"),
        (
            {
                "triggers": [
                    {"kind": "quality_drop", "source": "online_eval", "metric": "tone"},
                ]
            },
            "triggers[0].metric",
            "tone",
        ),
        (
            {"curation": {"labels": [{"kind": "file", "path": "labels.jsonl"}]}},
            "curation.labels[0].path",
            "labels.jsonl",
        ),
    ],
)
def test_unknown_references_are_refused_at_start_up(
    world: LoopWorld, change: dict[str, Any], field: str, words: str
) -> None:
    config = load_config(world.write_config(**change))
    with pytest.raises(LLMOpsError) as caught:
        check_config(world.home, config)
    assert caught.value.param == field
    assert field in caught.value.message and words in caught.value.message


def test_the_support_desk_loop_file_is_valid_configuration() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "support-desk"
    config = load_config(example / "loop.yaml")
    assert config.deployment_spec is not None and load_spec(config.deployment_spec).name == config.deployment
    assert load_recipe(config.retrain.recipe).kind == "finetune"
    assert config.gate.suite.is_file() and config.rollout.steps[-1].weight < 100
