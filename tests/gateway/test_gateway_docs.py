"""docs/gateway.md matches the configuration model, its YAML examples are valid, and --help points to it."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from scripts.gateway_docs import DOC, main, render, updated
from tests.conftest import CliRunner

from llmops.gateway.config import DeploymentConfig, GatewayConfig

ROOT = Path(__file__).resolve().parents[2]
YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)
BASE_DEPLOYMENTS = [
    {"name": "support-bot", "upstreams": [{"url": "http://10.0.0.11:8000"}], "price": {"free": True}},
    {"name": "support-bot-small", "upstreams": [{"url": "http://10.0.0.21:8000"}], "price": {"free": True}},
]


def test_the_settings_reference_is_up_to_date() -> None:
    text = DOC.read_text()
    assert updated(text) == text, "docs/gateway.md is out of date: run python scripts/gateway_docs.py"
    assert main(["--check"]) == 0


def _settings(model: type[BaseModel], seen: set[type[BaseModel]]) -> list[tuple[str, str | None]]:
    """(name, description) of every field of ``model`` and of the models it nests."""
    seen.add(model)
    found = []
    for name, field in model.model_fields.items():
        found.append((field.alias or name, field.description))
        for nested in _models_in(field.annotation):
            if nested not in seen:
                found += _settings(nested, seen)
    return found


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    args = getattr(annotation, "__args__", ())
    models = [m for arg in args for m in _models_in(arg)]
    return models if len(models) == 1 else []  # unions of several models are documented elsewhere


def test_every_setting_has_a_row_with_a_description() -> None:
    reference = render()
    settings = _settings(GatewayConfig, set())
    assert len(settings) > 100
    for name, description in settings:
        assert f"| `{name}` |" in reference, name
        assert description, f"{name} has no description"
    assert "`deployments[].arms[]`" in reference and "`deployments[].price`" in reference
    assert '| `fail_mode` | "open" \\| "closed" | `"open"` |' in reference


def test_a_changed_model_makes_the_check_fail(tmp_path: Path, monkeypatch: Any) -> None:
    import scripts.gateway_docs as generator

    stale = tmp_path / "gateway.md"
    stale.write_text(
        DOC.read_text().replace("| `port` | integer (≥ 0, ≤ 65535) | `4000` |", "| `port` | x |")
    )
    monkeypatch.setattr(generator, "DOC", stale)
    assert main(["--check"]) == 1
    assert main([]) == 0 and main(["--check"]) == 0  # rewritten
    assert stale.read_text() == DOC.read_text()


def _validate(fragment: str) -> None:
    data = yaml.safe_load(textwrap.dedent(fragment))
    assert isinstance(data, dict), fragment
    if set(data) <= set(GatewayConfig.model_fields):
        body = {"deployments": BASE_DEPLOYMENTS, **data}
    else:  # settings of one deployment
        assert set(data) <= set(DeploymentConfig.model_fields), fragment
        extra = (
            {} if "upstreams" in data or "arms" in data else {"upstreams": BASE_DEPLOYMENTS[0]["upstreams"]}
        )
        body = {"deployments": [{**BASE_DEPLOYMENTS[0], **extra, **data}, BASE_DEPLOYMENTS[1]]}
        if "arms" in data:
            del body["deployments"][0]["upstreams"]
    GatewayConfig.model_validate(body)


def test_the_yaml_examples_in_the_docs_are_valid() -> None:
    blocks = YAML_BLOCK.findall(DOC.read_text())
    assert len(blocks) >= 10
    for block in blocks:
        _validate(block)


def test_serve_help_points_to_the_docs_and_the_example(cli: CliRunner) -> None:
    result = cli("serve", "--help")
    assert result.code == 0
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.out).split())
    assert "docs/gateway.md" in text and "examples/gateway.yaml" in text
    assert (ROOT / "docs" / "gateway.md").is_file() and (ROOT / "examples" / "gateway.yaml").is_file()
