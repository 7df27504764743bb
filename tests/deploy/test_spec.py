"""deployment.yaml: defaults, the gateway DeploymentConfig it produces, and refusals naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.deploy.spec import DeploymentSpec, OpenAIBackend, TransformersBackend, load_spec, parse_spec
from llmops.deploy.target import DeployTarget, ReplicaState
from llmops.errors import InvalidInput

MINIMAL = {"name": "support-bot", "model": "support-bot@production", "gateway": {"price": {"free": True}}}


def _refusal(raw: dict[str, object]) -> str:
    with pytest.raises(InvalidInput) as caught:
        parse_spec(raw, source="deployment.yaml")
    return caught.value.message


def test_minimal_spec_takes_documented_defaults() -> None:
    spec = parse_spec(MINIMAL)
    assert isinstance(spec.backend, TransformersBackend)
    assert (spec.replicas.count, spec.replicas.min, spec.replicas.max) == (1, 1, 4)
    assert [step.weight for step in spec.rollout.steps] == [5, 25, 50, 100]
    assert spec.slo.max_error_rate == 0.01


def test_gateway_deployment_carries_price_limits_and_a_stable_arm() -> None:
    spec = parse_spec({**MINIMAL, "gateway": {"price": {"usd_per_engine_second": 0.01}, "rpm": 60}})
    config = spec.gateway_deployment()
    assert config.name == "support-bot" and config.rpm == 60
    assert config.price.usd_per_engine_second == 0.01
    assert [(a.name, a.model, a.upstreams) for a in config.arms] == [("stable", "support-bot@production", [])]


def test_openai_backend_needs_a_url_per_replica() -> None:
    spec = parse_spec({**MINIMAL, "backend": {"kind": "openai", "urls": ["http://10.0.0.5:8000"]}})
    assert isinstance(spec.backend, OpenAIBackend)
    message = _refusal(
        {**MINIMAL, "backend": {"kind": "openai", "urls": ["http://a"]}, "replicas": {"count": 2}}
    )
    assert "replicas.count" in message


@pytest.mark.parametrize(
    ("change", "field", "hint"),
    [
        ({"replcas": {"count": 2}}, "replcas", "Did you mean: replicas"),
        (
            {"backend": {"kind": "transformers", "engine": {"max_num_seqz": 4}}},
            "backend.engine.max_num_seqz",
            "unknown field",
        ),
        ({"backend": {"kind": "tpu"}}, "backend", "transformers, vllm or openai"),
        ({"replicas": {"count": 9, "max": 4}}, "replicas", "between min"),
        ({"resources": {"threads": 0}}, "resources.threads", "greater than or equal to 1"),
        ({"rollout": {"steps": [{"weight": 50}, {"weight": 5}]}}, "rollout", "strictly increase"),
        ({"gateway": {"price": {}}}, "gateway.price", "free: true"),
        ({"name": "Support Bot"}, "name", "pattern"),
        ({"backend": {"kind": "transformers", "engine": {"threads": 4}}}, "backend", "resources.threads"),
    ],
)
def test_bad_values_are_refused_with_the_field_path_and_a_fix(
    change: dict[str, object], field: str, hint: str
) -> None:
    message = _refusal({**MINIMAL, **change})
    assert f"field '{field}'" in message
    assert hint in message


def test_missing_gateway_section_is_named() -> None:
    raw = {k: v for k, v in MINIMAL.items() if k != "gateway"}
    assert "field 'gateway': field required" in _refusal(raw)


def test_load_spec_reads_yaml_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "deployment.yaml"
    path.write_text("name: support-bot\nmodel: support-bot@production\ngateway: {price: {free: true}}\n")
    assert load_spec(path).name == "support-bot"
    path.write_text("name: [unclosed\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_spec(path)


def test_target_contract_is_a_protocol_with_the_six_verbs() -> None:
    verbs = {"render", "apply", "status", "scale", "drain", "delete"}
    assert verbs <= set(dir(DeployTarget))
    assert ReplicaState.CRASH_LOOP == "crash_loop"
    assert DeploymentSpec.model_json_schema()["properties"]["replicas"]


def test_docs_reference_lists_every_top_level_field() -> None:
    text = (Path(__file__).parents[2] / "docs" / "deployment.md").read_text()
    reference = text.split("## Spec reference", 1)[1].split("## ", 1)[0]
    documented = {line.split("`")[1] for line in reference.splitlines() if line.startswith("| `")}
    assert documented == set(DeploymentSpec.model_fields)


@pytest.mark.parametrize("mode", ["python", "json"])
def test_a_dumped_spec_validates_again(mode: str) -> None:
    spec = parse_spec({**MINIMAL, "backend": {"kind": "transformers", "engine": {"max_num_seqs": 4}}})
    for exclude_unset in (False, True):
        dumped = spec.model_dump(mode=mode, exclude_unset=exclude_unset)  # type: ignore[arg-type]
        assert "threads" not in dumped["backend"]["engine"]
        assert DeploymentSpec.model_validate(dumped) == spec


def test_a_shadow_stage_is_refused_until_targets_can_mirror() -> None:
    message = _refusal({**MINIMAL, "rollout": {"shadow": {"sample_rate": 0.5}}})
    assert "field 'rollout'" in message and "shadow stage is not supported yet" in message
