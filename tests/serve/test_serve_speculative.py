"""Speculative decoding from the deployment spec and the replica CLI to a served replica's metrics."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from tests.engine.engine_factories import save_chat_model

from llmops.deploy.processes import replica_args
from llmops.deploy.spec import parse_spec
from llmops.engine.config import EngineConfig
from llmops.errors import InvalidInput
from llmops.registry import Registry
from llmops.serve import ServeConfig
from llmops.serve.metrics import ACCEPTANCE_METRIC, TOKENS_PER_STEP_METRIC
from llmops.serve.replica import prepare_replica
from llmops.store.home import Home

MINIMAL = {"name": "support-bot", "model": "support-bot@production", "gateway": {"price": {"free": True}}}


def _with_engine(engine: dict[str, object]) -> dict[str, object]:
    return {**MINIMAL, "backend": {"kind": "transformers", "engine": engine}}


def test_the_deployment_spec_hands_speculative_to_every_replica() -> None:
    spec = parse_spec(_with_engine({"speculative": {"draft": "support-student@2", "k": 3}}))
    args = replica_args(spec, "support-bot@3", "127.0.0.1", 8001)
    engine = json.loads(args[args.index("--engine-json") + 1])
    assert engine["speculative"] == {"draft": "support-student@2", "k": 3}
    speculative = EngineConfig(**engine).speculative
    assert speculative is not None and (speculative.draft, speculative.k) == ("support-student@2", 3)


def test_bad_speculative_settings_name_the_field() -> None:
    with pytest.raises(InvalidInput, match=r"backend\.engine\.speculative\.k"):
        parse_spec(_with_engine({"speculative": {"draft": "student@1", "k": 0}}))
    with pytest.raises(InvalidInput, match=r"backend\.engine\.speculative\.draft"):
        parse_spec(_with_engine({"speculative": {"k": 2}}))


def test_the_replica_cli_refuses_a_bad_k_in_one_line(
    cli: Callable[..., object], tiny_model_dir: Path
) -> None:
    result = cli(
        "replica", "--model", str(tiny_model_dir), "--engine-json", '{"speculative": {"draft": "x", "k": 99}}'
    )
    assert result.code != 0  # type: ignore[attr-defined]
    assert "speculative" in result.out + result.err  # type: ignore[attr-defined]


def test_an_unknown_draft_reference_is_refused(sqlite_home: Home, tiny_model_dir: Path) -> None:
    engine = EngineConfig(threads=1, num_kv_blocks=32, speculative={"draft": "no-such-draft@1"})
    with pytest.raises(InvalidInput, match=r"speculative\.draft") as raised:
        prepare_replica(str(tiny_model_dir), ServeConfig(), engine=engine, open_store=lambda: sqlite_home)
    assert raised.value.param == "speculative.draft"


@pytest.fixture(scope="module")
def chat_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The engine tests' tiny Llama with its tokenizer."""
    return save_chat_model(tmp_path_factory.mktemp("speculative") / "tiny")


@pytest.mark.slow
def test_a_replica_with_a_registered_draft_serves_and_exports_acceptance(
    sqlite_home: Home,
    chat_model_dir: Path,
    serve_app: Callable[[FastAPI], tuple[str, Callable[[], None]]],
) -> None:
    draft = Registry.from_home(sqlite_home).register(chat_model_dir, "tiny-draft")
    engine = EngineConfig(threads=1, num_kv_blocks=64, speculative={"draft": draft.ref, "k": 3})
    app, _ = prepare_replica(
        str(chat_model_dir),
        ServeConfig(served_model_name="tiny"),
        engine=engine,
        open_store=lambda: sqlite_home,
    )
    url, _ = serve_app(app)
    body = {"model": "tiny", "prompt": "hello there", "max_tokens": 12, "temperature": 0}
    answer = httpx.post(f"{url}/v1/completions", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] > 0
    metrics = {
        line.split()[0]: float(line.split()[1])
        for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
        if line and not line.startswith("#")
    }
    # The draft is the served model itself: every draft is kept, so k + 1 tokens per step.
    assert metrics[ACCEPTANCE_METRIC] == 1.0
    assert metrics[TOKENS_PER_STEP_METRIC] > 1.0
    assert (
        metrics["llmops_engine_spec_draft_tokens_total"]
        == metrics["llmops_engine_spec_accepted_tokens_total"]
    )
