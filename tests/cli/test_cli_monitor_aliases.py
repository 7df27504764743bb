"""Monitoring resolves model references like the registry: ``name``, ``name@N`` and ``name@alias``."""

from __future__ import annotations

import json

import pytest
from tests.cli.conftest import LOGGED, Served
from tests.conftest import CliRunner

from llmops.monitor.drift_store import load_references


@pytest.mark.parametrize("ref", ["demo@production", "demo", "demo@1"])
def test_drift_finds_the_logged_samples_by_alias_name_or_number(
    ref: str, served: Served, cli: CliRunner
) -> None:
    set_ref = cli("monitor", "reference", "--version", ref, "--dataset", served.dataset)
    assert set_ref.code == 0, set_ref.err
    assert [r.model_version for r in load_references(served.home.store)] == ["demo@1"]
    checked = cli("monitor", "drift", "--version", ref, "--json")
    assert checked.code in (0, 1), checked.err
    report = json.loads(checked.out)
    assert report["model_version"] == "demo@1" and report["window_samples"] == LOGGED
    with_dataset = cli("monitor", "drift", "--version", ref, "--reference", served.dataset, "--json")
    assert json.loads(with_dataset.out)["window_samples"] == LOGGED


def test_request_search_by_alias(served: Served, cli: CliRunner) -> None:
    by_alias = cli("requests", "search", "--version", "demo@production", "--limit", "500", "--json")
    assert by_alias.code == 0, by_alias.err
    assert len(json.loads(by_alias.out)) == LOGGED
    by_name = cli("requests", "search", "--version", "demo", "--limit", "500", "--json")
    assert by_alias.out == by_name.out


@pytest.mark.parametrize(
    ("command", "ref", "hint"),
    [
        (("monitor", "reference", "--dataset", "prompts@1"), "no-such-model@9", "no registered model"),
        (("monitor", "reference", "--dataset", "prompts@1"), "demo@9", "no version 9"),
        (("monitor", "drift"), "demo@prodution", "Did you mean: production?"),
        (("requests", "search"), "dem@production", "Did you mean: demo?"),
        (("monitor", "online-eval"), "demo@staging", "Its aliases: production"),
    ],
)
def test_unknown_references_are_refused_with_a_suggestion(
    command: tuple[str, ...], ref: str, hint: str, served: Served, cli: CliRunner
) -> None:
    result = cli(*command, "--version", ref)
    assert result.code == 2
    assert hint in result.err
    assert load_references(served.home.store) == []


def test_drift_without_a_reference_suggests_the_cli(served: Served, cli: CliRunner) -> None:
    result = cli("monitor", "drift", "--version", "demo@production")
    assert result.code == 2
    assert "llmops monitor reference --version demo@1 --dataset" in result.err


def test_request_show_accepts_a_unique_id_prefix(served: Served, cli: CliRunner) -> None:
    shown = cli("requests", "show", "req-0003")
    assert shown.code == 0, shown.err
    assert f"request req-0003-{'a' * 24}" in shown.out
    ambiguous = cli("requests", "show", "req-00")
    assert ambiguous.code == 2 and "several request ids" in ambiguous.err
    missing = cli("requests", "show", "nope-1234")
    assert missing.code == 2 and "no request 'nope-1234'" in missing.err
