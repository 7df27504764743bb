"""Synthetic tasks: determinism, checkable answers, domains that shift the distribution, scoring."""

from __future__ import annotations

import json
import re

import pytest

from llmops.data import synth
from llmops.data.schemas import SchemaKind, validate_row
from llmops.data.synth_intent import REPLIES
from llmops.errors import InvalidInput


def _words(rows: list[dict[str, str]]) -> set[str]:
    return {w for r in rows for w in re.findall(r"[a-z]+", r["prompt"].lower())}


def test_registry_and_domains() -> None:
    assert set(synth.TASKS) >= {"arithmetic", "extraction", "intent"}
    for task in synth.TASKS:
        names = synth.domains(task)
        assert names[0] == "default"
        assert "shifted" in names


@pytest.mark.parametrize("task", sorted(synth.TASKS))
def test_same_seed_same_rows_and_valid_schema(task: str) -> None:
    rows = synth.generate(task, 200, seed=11)
    assert rows == synth.generate(task, 200, seed=11)
    assert rows != synth.generate(task, 200, seed=12)
    assert rows[:50] == synth.generate(task, 50, seed=11)
    assert len({r["id"] for r in rows}) == 200
    for line, row in enumerate(rows, start=1):
        validate_row(row, SchemaKind.PROMPT_COMPLETION, source=task, line=line)
        assert set(row) == {"prompt", "completion", "task", "domain", "id"}
        assert (row["task"], row["domain"]) == (task, "default")
        assert len(row["prompt"].split()) < 25
        assert synth.score(task, " " + row["completion"] + "\n", row["completion"])


def _arithmetic_parts(prompt: str) -> tuple[int, int, bool]:
    a, b = (int(x) for x in re.findall(r"\d+", prompt))
    return a, b, " more" in prompt


@pytest.mark.parametrize("domain", ["default", "large_numbers", "shifted"])
def test_arithmetic_answers_are_correct(domain: str) -> None:
    for row in synth.generate("arithmetic", 300, seed=0, domain=domain):
        a, b, adds = _arithmetic_parts(row["prompt"])
        assert int(row["completion"]) == (a + b if adds else a - b)
        assert int(row["completion"]) >= 0


def test_arithmetic_domains_shift_numbers_and_vocabulary() -> None:
    default = synth.generate("arithmetic", 500, seed=0)
    shifted = synth.generate("arithmetic", 500, seed=0, domain="shifted")
    assert max(max(_arithmetic_parts(r["prompt"])[:2]) for r in default) <= 9
    assert min(_arithmetic_parts(r["prompt"])[0] for r in shifted) >= 20
    assert max(int(r["completion"]) for r in default) <= 18
    new_words = _words(shifted) - _words(default)
    assert {"coins", "marbles", "oscar", "kofi"} <= new_words
    assert not {"apples", "tom"} & _words(shifted)


def test_extraction_completion_is_compact_ordered_json_of_the_prompt() -> None:
    for row in synth.generate("extraction", 200, seed=4):
        record = json.loads(row["completion"])
        assert list(record) == ["name", "city", "item", "qty"]
        assert row["completion"] == json.dumps(record, separators=(",", ":"))
        for value in record.values():
            assert str(value) in row["prompt"]
        assert 1 <= record["qty"] <= 9
    shifted = synth.generate("extraction", 200, seed=4, domain="shifted")
    assert min(json.loads(r["completion"])["qty"] for r in shifted) >= 10
    default_names = {json.loads(r["completion"])["name"] for r in synth.generate("extraction", 200, seed=4)}
    assert not default_names & {json.loads(r["completion"])["name"] for r in shifted}


def test_extraction_score_compares_parsed_json() -> None:
    gold = '{"name":"Alice","city":"Paris","item":"lamps","qty":3}'
    assert synth.score("extraction", '{"qty": 3, "item": "lamps", "city": "Paris", "name": "Alice"}', gold)
    assert not synth.score("extraction", '{"name":"Alice","city":"Paris","item":"lamps","qty":4}', gold)
    assert not synth.score("extraction", '{"name":"Alice","city":"Paris","item":"lamps","qty":"3"}', gold)
    assert not synth.score("extraction", '{"name":"Alice"', gold)


def test_exact_match_scoring() -> None:
    assert synth.score("arithmetic", " 12 ", "12")
    assert not synth.score("arithmetic", "12.", "12")
    assert not synth.score("intent", REPLIES["cancel"], REPLIES["refund"])


def test_intent_replies_come_from_the_fixed_set_and_all_appear() -> None:
    rows = synth.generate("intent", 500, seed=0)
    assert {r["completion"] for r in rows} == set(REPLIES.values())
    assert len(REPLIES) >= 5


def test_intent_shifted_domain_uses_unseen_products_and_wording() -> None:
    default = synth.generate("intent", 3000, seed=0)
    new_products = synth.generate("intent", 1000, seed=0, domain="new_products")
    shifted = synth.generate("intent", 1000, seed=0, domain="shifted")
    assert {r["completion"] for r in shifted} == set(REPLIES.values())
    seen = _words(default)
    for product in ("surfboard", "telescope", "kayak"):
        assert product not in seen
        assert product in _words(shifted)
        assert product in _words(new_products)
    cue_words = {"refund", "cancel", "password", "address", "broken", "damaged", "person", "arrive"}
    assert cue_words <= seen
    assert not cue_words & _words(shifted)
    # new_products keeps the default wording: only the products are new.
    assert _words(new_products) - seen <= {
        "surfboard",
        "telescope",
        "hammock",
        "accordion",
        "saddle",
        "kayak",
        "microscope",
        "trampoline",
    }


def test_unknown_task_domain_and_bad_n() -> None:
    with pytest.raises(InvalidInput, match="arithmetic, extraction, intent") as info:
        synth.generate("poetry", 3, seed=0)
    assert info.value.param == "task"
    with pytest.raises(InvalidInput, match="use one of: default, large_numbers, shifted") as info:
        synth.generate("arithmetic", 3, seed=0, domain="mars")
    assert info.value.param == "domain"
    with pytest.raises(InvalidInput) as info:
        synth.generate("intent", -1, seed=0)
    assert info.value.param == "n"
    with pytest.raises(InvalidInput, match="unknown synthetic task"):
        synth.score("poetry", "a", "a")
    assert synth.generate("intent", 0, seed=0) == []
