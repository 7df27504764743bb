"""Evaluation runs through the runner and the CLI: stored results, gates on versions, comparison."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from tests.factories import make_tiny_model

from llmops.data.versions import DatasetStore
from llmops.evals.generation import Generation, Prompt
from llmops.evals.runner import EvalRunner
from llmops.evals.suite import GenerationParams
from llmops.registry import Registry
from llmops.store.home import Home, open_home

SUITE = """
name: qa
dataset: qa@1
fields: {input: prompt, reference: completion}
generation: {max_tokens: 4, temperature: 0.0}
metrics:
  - {name: exact_match}
gates:
  - {metric: exact_match, min: 0.5}
  - {metric: exact_match, no_regression_vs: production, tolerance: 0.0}
statistics: {resamples: 500}
"""
ROWS = [{"prompt": f"question {i}", "completion": f"answer {i}"} for i in range(80)]


class ScriptedGenerator:
    """Answers correctly on a fixed share of examples (every k-th wrong): a model of known skill."""

    def __init__(self, wrong_every: int) -> None:
        self.wrong_every = wrong_every

    def generate(
        self, prompts: Sequence[Prompt], params: GenerationParams, *, score_reference: bool = False
    ) -> list[Generation]:
        out = []
        for i, prompt in enumerate(prompts):
            right = self.wrong_every == 0 or i % self.wrong_every != 0
            out.append(Generation(prompt.reference if right else "nonsense", 2, 0.01, 100.0))
        return out


def _model_dir(tmp_path: Path, name: str, seed: int) -> Path:
    from llmops.train.tokenizer import train_tokenizer

    target = tmp_path / name
    tokenizer = train_tokenizer(
        [r["prompt"] + " " + r["completion"] for r in ROWS] * 3, target, vocab_size=300
    )
    make_tiny_model(target, seed=seed, vocab_size=len(tokenizer))
    return target


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Home, Path, dict[str, int]]:
    home = open_home()
    DatasetStore.from_home(home).commit("qa", ROWS, "prompt_completion")
    registry = Registry.from_home(home)
    strong = registry.register(_model_dir(tmp_path, "strong", 0), "m")
    weak = registry.register(_model_dir(tmp_path, "weak", 1), "m")
    registry.set_alias("m", "production", strong.version)
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    # strong is right on 95% of examples, weak on 50%.
    return home, suite, {strong.digest: 20, weak.digest: 2}


def _runner(home: Home, skill: dict[str, int]) -> EvalRunner:
    return EvalRunner(home, generator_factory=lambda path: ScriptedGenerator(skill[path.name]))


def test_weak_candidate_fails_no_regression_gate_and_strong_passes(setup) -> None:  # type: ignore[no-untyped-def]
    home, suite, skill = setup
    runner = _runner(home, skill)
    weak = runner.run(suite, "m@2")
    assert weak.gates is not None and not weak.gates.passed
    failed = {g.name for g in weak.gates.failures}
    assert "exact_match no regression vs production" in failed
    strong = runner.run(suite, "m@production")
    assert strong.gates is not None and strong.gates.passed
    assert strong.summary.get("exact_match").score == pytest.approx(0.95)  # type: ignore[union-attr]
    # gate results are stored on each version
    registry = Registry.from_home(home)
    assert registry.get("m@2").tags["gates/qa"]["passed"] is False
    assert registry.get("m@1").tags["gates/qa"]["passed"] is True
    # the stored run reads back with every example's input, output and scores
    loaded = runner.load(weak.run_id)
    assert len(loaded.results.outcomes) == 80
    assert loaded.results.outcomes[0].prediction == "nonsense"
    assert loaded.results.outcomes[1].prompt == "question 1"


def test_comparison_says_better_with_interval_excluding_zero(setup) -> None:  # type: ignore[no-untyped-def]
    home, suite, skill = setup
    comparison, _, _ = _runner(home, skill).compare(suite, "m@1", "m@2")
    exact = comparison.get("exact_match")
    assert exact is not None and exact.verdict == "better"
    assert exact.interval.low > 0


def test_missing_field_fails_before_generation(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home, _suite, _skill = setup
    bad = tmp_path / "bad.yaml"
    bad.write_text(SUITE.replace("reference: completion", "reference: answer"))
    from llmops.errors import InvalidInput

    class Exploding(ScriptedGenerator):
        def generate(self, *args: object, **kwargs: object) -> list[Generation]:
            raise AssertionError("generation must not start")

    runner = EvalRunner(home, generator_factory=lambda path: Exploding(0))
    with pytest.raises(InvalidInput, match="answer"):
        runner.run(bad, "m@1")


@pytest.mark.slow
def test_cli_run_with_real_generation_and_report(setup, cli) -> None:  # type: ignore[no-untyped-def]
    _home, suite, _skill = setup
    result = cli("eval", "run", suite, "--model", "m@1", "--limit", "8")
    # an untrained model cannot answer: the min gate fails and the exit code says so
    assert result.code == 1, result.err
    assert "exact_match" in result.out and "run:" in result.out
    assert "exact_match >= 0.5" in result.out and "&gt;" not in result.out  # no HTML entities on a terminal
    run_id = result.out.split("run:")[1].split()[0]
    report = cli("eval", "report", run_id[:10])
    assert report.code == 0 and "exact_match" in report.out
    # the stored gates come back with the run: verdict and the gates table
    assert "Gates failed" in report.out and "### Gates: 1 of 2 gates failed" in report.out
    assert "Evaluation finished." not in report.out
    card = cli("models", "card", "m@1")
    assert card.code == 0, card.err
    evaluation = card.out.split("## Evaluation")[1].split("## Lineage")[0]
    assert f"`{run_id[:12]}` | qa | qa@1 | 8 | exact_match 0 | failed |" in evaluation
    assert f"Gates of run `{run_id[:12]}` (qa):" in evaluation
    assert "| exact_match >= 0.5 | fail |" in evaluation and "| pass |" in evaluation
