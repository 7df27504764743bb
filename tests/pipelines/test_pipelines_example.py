"""The support-desk example end to end (scaled down by `-p`), as `make demo` runs it (`pipeline
dag`, then `run --stage register --reports DIR` twice: every stage says why it ran or was skipped),
then a first release by hand and, through the exported CI command, a candidate worse than the
champion that the gate stops."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.pipelines import ci, spec
from llmops.registry import Registry
from llmops.store.home import open_home

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "support-desk" / "llmops.yaml"
SMALL = [
    "rows=600",
    "shifted_rows=100",
    "max_steps=80",
    "threads=1",
    "min_exact_match=0.3",
    "train.set.model.hidden_size=64",
    "train.set.model.intermediate_size=128",
    "train.set.model.num_layers=2",
    "train.set.tokenizer.vocab_size=400",
    "train.set.eval_every=40",
    "train.set.optim.warmup_steps=10",
    "train.set.optim.lr=5e-3",
]
STAGES = ci.ci_stages(spec.load(EXAMPLE))  # what the exported workflow runs: up to `register`


def _args(*extra: str, reports: str = ci.REPORTS_DIR) -> list[str]:
    params = [arg for item in SMALL for arg in ("-p", item)]
    return [*ci.run_command(str(EXAMPLE), reports=reports, stages=STAGES), *params, *extra]


def _lines(out: str, tag: str) -> list[str]:
    return [
        line.removeprefix(tag).split()[0].rstrip(":") for line in out.splitlines() if line.startswith(tag)
    ]


@pytest.mark.slow
def test_support_desk_runs_caches_reruns_and_gates(cli, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    assert STAGES == ["register"]
    drawn = cli("pipeline", "dag", EXAMPLE)
    assert drawn.code == 0 and "deploy [deploy] ← register.model" in drawn.out
    reports = tmp_path / "demo" / "reports"  # like the demo's --reports, away from the working dir
    first = cli(*_args(reports=str(reports)))
    assert first.code == 0, first.out + first.err
    stages = ["synthesise", "synthesise-shifted", "clean", "split", "train", "evaluate", "evaluate-shifted"]
    assert _lines(first.out, "[run]") == [*stages, "gate", "register"]
    assert "[run] synthesise (data.synth): never ran" in first.out
    assert "deploy" not in _lines(first.out, "[run]") + _lines(first.out, "[skip]")
    registry = Registry.from_home(open_home())
    assert registry.get("demo-intent@staging").version == 1
    assert (reports / "gate.md").is_file() and not (tmp_path / "reports").exists()  # --reports holds both
    assert "gate `gate`" in (reports / "pipeline.md").read_text()

    (reports / "gate.md").unlink()  # a fresh CI checkout: the summary comes back
    again = cli(*_args(reports=str(reports)))
    assert again.code == 0, again.out
    assert _lines(again.out, "[run]") == []
    assert _lines(again.out, "[skip]") == [*stages, "gate", "register"]
    assert all("unchanged (key" in line for line in again.out.splitlines() if line.startswith("[skip]"))
    assert (reports / "gate.md").is_file()

    # the first release is made by hand: nothing serves yet for the deploy stage to roll out over
    assert cli("models", "alias", "set", "demo-intent", "production", "1", "--reason", "launch").code == 0
    worse = cli(*_args("-p", "max_steps=2"))
    assert worse.code == 1, worse.out
    assert "[run] train (train): changed: param max_steps: 80 → 2" in worse.out
    assert _lines(worse.out, "[run]") == ["train", "evaluate", "evaluate-shifted", "gate"]
    assert _lines(worse.out, "[skip]") == ["synthesise", "synthesise-shifted", "clean", "split"]
    assert "[blocked] register: not run because gate gate failed" in worse.out
    assert registry.get("demo-intent@production").version == 1, "a failed gate moves no alias"
    assert registry.get("demo-intent@staging").version == 1
    summary = (tmp_path / "reports" / "gate.md").read_text()
    failing = next(line for line in summary.splitlines() if "no regression vs production" in line)
    assert "❌ fail" in failing and "[-" in failing  # the failing metric with its interval
    assert "exact_match" in failing
    assert "Gates failed" in summary or "gates failed" in summary

    shown = cli("pipeline", "list")
    assert shown.code == 0 and shown.out.count("support-desk") == 3
    run_id = shown.out.split()[0]
    detail = cli("pipeline", "show", run_id)
    assert "gate_failed" in detail.out and "blocked" in detail.out
