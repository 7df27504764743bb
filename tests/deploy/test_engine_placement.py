"""A deployment's ``backend.engine.device``/``dtype``: rendered into every replica command (a local
process, a Kubernetes container, a Ray Serve replica), and a ``cuda`` device requests GPUs on the
cluster targets (Kubernetes ``nvidia.com/gpu``, Ray ``num_gpus``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmops.deploy.kubernetes.bundle import objects
from llmops.deploy.processes import replica_args
from llmops.deploy.spec import DeploymentSpec, parse_spec
from llmops.errors import InvalidInput

SUPPORT_BOT = Path(__file__).parents[2] / "examples" / "deploy" / "support-bot.yaml"


def _spec(engine: dict[str, Any], **resources: Any) -> DeploymentSpec:
    raw = yaml.safe_load(SUPPORT_BOT.read_text())
    raw["backend"] = {"kind": "transformers", "engine": {"max_num_seqs": 8, **engine}}
    raw["resources"] = {**raw.get("resources", {}), **resources}
    return parse_spec(raw)


def _replica_container(spec: DeploymentSpec) -> dict[str, Any]:
    deployment = next(
        o for o in objects(spec, {"stable": "support-bot@3"})
        if o["kind"] == "Deployment" and o["metadata"]["name"] != "llmops-gateway"
    )  # fmt: skip
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_a_cuda_engine_requests_a_gpu_and_runs_on_it() -> None:
    container = _replica_container(_spec({"device": "cuda", "dtype": "bfloat16"}))
    resources = container["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 1
    assert (_flag(container["args"], "--device"), _flag(container["args"], "--dtype")) == ("cuda", "bfloat16")
    engine = json.loads(_flag(container["args"], "--engine-json"))
    assert engine == {"max_num_seqs": 8}  # device and dtype travel as flags, once


@pytest.mark.parametrize(("engine", "gpus", "expected"), [
    ({"device": "cpu"}, 0, 0),
    ({}, 0, 0),  # auto asks for nothing: it uses a GPU only where one is given
    ({}, 2, 2),
    ({"device": "cuda:1"}, 0, 2),  # cuda:1 needs a second GPU in the replica
    ({"device": "cuda"}, 4, 4),
])  # fmt: skip
def test_gpus_per_replica_follow_the_device(engine: dict[str, Any], gpus: int, expected: int) -> None:
    spec = _spec(engine, gpus=gpus)
    assert spec.gpus_per_replica == expected
    resources = _replica_container(spec)["resources"]
    assert resources["limits"].get("nvidia.com/gpu", 0) == expected
    assert resources["requests"].get("nvidia.com/gpu", 0) == expected


def test_ray_replicas_reserve_the_gpus_of_a_cuda_engine() -> None:
    pytest.importorskip("ray")
    from llmops.deploy.ray.application import _replica_args, ray_actor_options

    spec = _spec({"device": "cuda", "dtype": "float16"}, threads=2)
    assert ray_actor_options(spec, {})["num_gpus"] == 1
    assert ray_actor_options(_spec({"device": "cpu"}), {})["num_gpus"] == 0
    _, _, engine = _replica_args(spec, "support-bot@3")
    assert (engine["device"], engine["dtype"], engine["threads"]) == ("cuda", "float16", 2)


def test_local_replica_commands_carry_the_flags_the_cli_reads(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmops.cli.replica as cli_module

    spec = _spec({"device": "cpu", "dtype": "bfloat16"})
    args = replica_args(spec, "support-bot@3", "127.0.0.1", 8001)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(cli_module, "run_replica", lambda model, config, **kw: calls.append(kw))
    result = cli(*args)
    assert result.code == 0, result.err
    engine = calls[0]["engine"]
    assert (engine.device, engine.dtype, engine.max_num_seqs) == ("cpu", "bfloat16", 8)


@pytest.mark.parametrize(("engine", "gpus", "field"), [
    ({"device": "cpu"}, 1, "resources.gpus"),
    ({"device": "cuda:2"}, 1, "backend.engine.device"),
    ({"device": "tpu"}, 0, "backend.engine.device"),
    ({"dtype": "int8"}, 0, "backend.engine.dtype"),
])  # fmt: skip
def test_a_device_the_gpus_cannot_serve_is_refused_naming_the_field(
    engine: dict[str, Any], gpus: int, field: str
) -> None:
    with pytest.raises(InvalidInput, match=field.replace(".", r"\.")):
        _spec(engine, gpus=gpus)
