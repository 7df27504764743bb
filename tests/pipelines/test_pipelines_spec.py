"""Bad pipeline files are refused before anything runs, naming the stage and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmops.errors import InvalidInput
from llmops.pipelines import dag, spec

SYNTH = {"kind": "data.synth", "params": {"task": "intent", "name": "d", "n": "${params.n}"}}


def body(**stages: dict) -> dict:  # type: ignore[type-arg]
    return {"name": "p", "params": {"n": 10}, "stages": stages or {"synth": SYNTH}}


def refused(data: dict, *overrides: str) -> str:  # type: ignore[type-arg]
    with pytest.raises(InvalidInput) as caught:
        spec.build(data, Path("llmops.yaml"), overrides)
    return caught.value.message


def test_a_valid_file_gives_the_dag_in_order() -> None:
    split = {"kind": "data.split", "params": {"input": "${stages.synth.outputs.dataset}"}}
    pipeline = spec.build(body(split=split, synth=SYNTH), Path("llmops.yaml"))
    assert pipeline.order == ("synth", "split")
    assert pipeline.stages["synth"].params.n == 10  # type: ignore[attr-defined]
    assert "split [data.split] ← synth.dataset" in dag.text(pipeline)
    assert "synth -->|dataset| split" in dag.mermaid(pipeline)


def test_cycle_is_refused_naming_the_stages() -> None:
    a = {"kind": "data.transform", "params": {"input": "${stages.b.outputs.dataset}", "step": "normalize"}}
    b = {"kind": "data.transform", "params": {"input": "${stages.a.outputs.dataset}", "step": "normalize"}}
    message = refused(body(a=a, b=b))
    assert "cycle" in message and "a" in message and "b" in message


def test_missing_stage_and_missing_output_are_refused() -> None:
    ghost = {"kind": "data.split", "params": {"input": "${stages.ghost.outputs.dataset}"}}
    assert "stage 'split': refers to missing stage 'ghost'" in refused(body(synth=SYNTH, split=ghost))
    wrong = {"kind": "data.split", "params": {"input": "${stages.synth.outputs.model}"}}
    message = refused(body(synth=SYNTH, split=wrong))
    assert "stage 'split'" in message and "has no output 'model'" in message and "dataset" in message


def test_unknown_kind_and_wrong_types_name_stage_and_field() -> None:
    assert "stage 'x': kind: unknown stage kind 'data.synthesize'" in refused(
        body(x={"kind": "data.synthesize"})
    )
    bad = {"kind": "data.synth", "params": {"task": "intent", "name": "d", "n": "many"}}
    message = refused(body(synth=bad))
    assert "stage 'synth' (data.synth)" in message and "params.n" in message
    typo = {"kind": "data.synth", "params": {"task": "intent", "name": "d", "n": 3, "sede": 1}}
    assert "params.sede" in refused(body(synth=typo))


def test_overrides_are_type_checked() -> None:
    assert "params.n" in refused(body(), "synth.n=lots")
    assert "parameter 'n' is a int" in refused(body(), "n=ten")
    assert "no stage 'trian'" in refused(body(), "trian.lr=1")
    pipeline = spec.build(body(), Path("llmops.yaml"), ["n=25", "synth.seed=3"])
    assert pipeline.stages["synth"].params.n == 25  # type: ignore[attr-defined]
    assert pipeline.stages["synth"].params.seed == 3  # type: ignore[attr-defined]


def test_unknown_params_reference_is_refused() -> None:
    bad = {"kind": "data.synth", "params": {"task": "intent", "name": "d", "n": "${params.rows}"}}
    assert "unknown pipeline parameter ${params.rows}" in refused(body(synth=bad))


def test_promotion_must_come_after_a_gate() -> None:
    stages = {
        "synth": SYNTH,
        "gate": {"kind": "gate", "params": {"evals": ["r1"]}},
        "promote": {"kind": "alias", "params": {"model": "m@1", "alias": "production"}},
    }
    message = refused(body(**stages))
    assert "stage 'promote' (alias) ships a model but does not come after a gate" in message
    stages["promote"]["after"] = ["gate"]  # type: ignore[index]
    spec.build(body(**stages), Path("llmops.yaml"))


def test_unavailable_kinds_are_refused_before_running(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmops.pipelines.stages.optimise import Quantize

    # every kind is available in this installation: stand in for one that is not (a missing extra)
    monkeypatch.setattr(Quantize, "available", lambda self: "not available in this version of llmops")
    stages = {"synth": SYNTH, "q": {"kind": "quantize", "params": {"model": "m@1", "method": "int8-dynamic"}}}
    pipeline = spec.build(body(**stages), Path("llmops.yaml"))
    with pytest.raises(InvalidInput, match="not available in this version"):
        spec.check_available(pipeline, ["synth", "q"])
    spec.check_available(pipeline, ["synth"])  # a selection without it runs
    deploy = {"kind": "deploy", "params": {"spec": "deployment.yaml", "candidate": "m@1"}}
    pipeline = spec.build(body(deploy=deploy), Path("llmops.yaml"))
    spec.check_available(pipeline, ["deploy"])  # the rollout controller exists
    deploy["params"]["policy"] = {"steps": [{"weight": 50}, {"weight": 10}]}  # type: ignore[index]
    with pytest.raises(InvalidInput, match=r"stage 'deploy' \(deploy\): params.policy: .*strictly increase"):
        spec.build(body(deploy=deploy), Path("llmops.yaml"))


def test_cli_refuses_a_bad_file_with_exit_2(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "llmops.yaml"
    path.write_text(yaml.safe_dump(body(synth={"kind": "nope"})))
    result = cli("pipeline", "run", path)
    assert result.code == 2 and "unknown stage kind 'nope'" in result.err
    assert cli("pipeline", "kinds").code == 0
