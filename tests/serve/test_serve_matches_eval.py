"""The served model answers exactly as the evaluated one: README's first session, then a replica.

The demo model is trained the README's way (synthetic intents, the split, the demo recipe, the
demo suite through ``llmops eval run``), only smaller: the recipe is the README's with its sizes and
steps scaled down. The model is then served by a real replica (what ``llmops replica`` runs, over
real HTTP), and every answer through the official ``openai`` client, on both routes the model's
recorded input format supports, must equal the evaluation's stored output for that prompt.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from tests.conftest import CliRunner
from tests.servers import serving

from llmops.evals.runner import EvalRunner
from llmops.evals.suite import load_suite
from llmops.registry import Registry
from llmops.store.home import open_home

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README_RECIPE = ROOT / "src/llmops/train/recipes/demo-intent.yaml"
README_SUITE = ROOT / "examples/demo/intent-suite.yaml"
SERVING_DOC = ROOT / "docs/serving.md"
PROMPTS_PER_REQUEST = 16  # the replica's default limit
# The README's recipe, scaled down to train in seconds on two cores.
SMALLER = {
    "model": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1},
    "tokenizer": {"vocab_size": 400},
    "optim": {"max_steps": 50, "batch_size": 8, "warmup_steps": 5, "lr": 1.0e-2},
    "max_seq_len": 64,
    "eval_every": None,
    "early_stopping_patience": None,
    "checkpoint_every": None,
}


def _small_recipe(path: Path) -> Path:
    recipe: dict[str, Any] = yaml.safe_load(README_RECIPE.read_text())
    for key, value in SMALLER.items():
        if isinstance(value, dict):
            recipe[key] = {**recipe[key], **value}
        elif value is None:
            recipe.pop(key, None)
        else:
            recipe[key] = value
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_served_answers_equal_the_evaluations_stored_outputs(cli: CliRunner, tmp_path: Path) -> None:
    for step in (
        ("init",),
        ("data", "synth", "intent", "--name", "intent", "--n", "240", "--seed", "0"),
        ("data", "split", "intent", "--key", "prompt"),
        ("train", "run", _small_recipe(tmp_path / "demo-intent.yaml"), "--threads", "2"),
        ("models", "alias", "set", "demo-intent", "production", "1", "--reason", "launch"),
    ):
        done = cli(*step)
        assert done.code == 0, (step, done.out, done.err)
    evaluated = cli("eval", "run", README_SUITE, "--model", "demo-intent@production")
    assert evaluated.code in (0, 1), evaluated.err  # 1: a gate failed, which a model this small may
    run_id = re.findall(r"run: ([0-9a-f]{32})", evaluated.out)[-1]

    home = open_home()
    outcomes = EvalRunner(home).load(run_id).results.outcomes
    assert len(outcomes) >= 10
    version = Registry.from_home(home).get("demo-intent@production")
    assert version.tags["input_format"]["chat"] == "prompt"  # trained on prompt/completion rows
    card = cli("models", "card", "demo-intent@production").out
    assert "## Input format" in card and "one user message" in card
    assert "one user message" in cli("models", "show", "demo-intent@production").out

    from llmops.engine.config import EngineConfig
    from llmops.serve import ServeConfig
    from llmops.serve.replica import prepare_replica

    app, _ = prepare_replica(
        "demo-intent@production", ServeConfig(), engine=EngineConfig(threads=2), open_store=lambda: home
    )
    params = load_suite(README_SUITE).generation
    same: Any = {"model": "demo-intent@production", "max_tokens": params.max_tokens, "temperature": 0}
    # log_config None: uvicorn keeps its hands off logging, which the cli fixture's capture owns.
    with serving(app, loop="uvloop", http="httptools") as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=120)
        choices = []
        for start in range(0, len(outcomes), PROMPTS_PER_REQUEST):
            prompts = [o.prompt for o in outcomes[start : start + PROMPTS_PER_REQUEST]]
            answer = client.completions.create(prompt=prompts, **same)
            choices += sorted(answer.choices, key=lambda c: c.index)
        completions = [c.text for c in choices]
        chats = [
            client.chat.completions.create(messages=[{"role": "user", "content": o.prompt}], **same)
            .choices[0]
            .message.content
            for o in outcomes
        ]
        stored = [o.prediction for o in outcomes]
        assert completions == stored
        assert chats == stored
        # Generation ends at eos when serving as when evaluating: replies that stopped, not ran on.
        assert any(c.finish_reason == "stop" and c.text for c in choices)
        # docs/serving.md's example runs against this replica as written (only its address differs).
        (example,) = re.findall(r"```python\n(.*?)```", SERVING_DOC.read_text(), re.S)
        exec(compile(example.replace("http://127.0.0.1:8000", url), str(SERVING_DOC), "exec"), {})
        # A conversation this model was never trained on: refused, naming the route that serves it.
        conversation: Any = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"}]
        with pytest.raises(openai.BadRequestError, match="/v1/completions"):
            client.chat.completions.create(messages=conversation, **same)
