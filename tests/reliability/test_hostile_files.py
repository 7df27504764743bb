"""Hostile YAML files on every command that reads one: a one-line error naming the file, fast.

Alias bombs ("billion laughs"), self-referencing aliases, nesting past the limit and huge scalars,
given to ``llmops train run``, ``eval run``, ``pipeline dag``, ``deploy apply``, ``loop once``,
``serve --config`` and the alert-rules loader. None may hang, run out of memory, or print a trace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from llmops.errors import InvalidInput
from llmops.gateway.config import GatewayConfig
from llmops.monitor.alert_rules import load_alert_rules
from llmops.security.yaml_input import YAMLLimitError, load_yaml


def _bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _merge_bomb() -> str:
    lines = ["a: &a {k0: x, k1: x, k2: x}"]
    for i in range(12):
        parent = "a" if i == 0 else f"b{i - 1}"
        lines.append(f"b{i}: &b{i} {{<<: *{parent}, l{i}: [*a, *a, *a, *a, *a, *a, *a, *a]}}")
    return "\n".join([*lines, "c: [" + ",".join(["*b11"] * 2000) + "]"]) + "\n"


HOSTILE_YAML: dict[str, tuple[str, str]] = {
    "alias_bomb": (_bomb(), "expands to more than"),
    "merge_key_bomb": (_merge_bomb(), "expands to more than"),
    "recursive_alias": ("a: &a [*a]\n", "nested deeper"),
    "deep_flow": ("x: " + "[" * 200 + "]" * 200 + "\n", "nested deeper"),
    "huge_scalar": ("name: " + "x" * (2 << 20) + "\n", "characters"),
}  # fmt: skip

ANSWER_WITHIN_S = 10.0


@pytest.mark.parametrize("case", list(HOSTILE_YAML))
def test_load_yaml_refuses_within_limits(case: str) -> None:
    text, needle = HOSTILE_YAML[case]
    started = time.monotonic()
    with pytest.raises(yaml.YAMLError, match=needle):
        load_yaml(text)
    assert time.monotonic() - started < ANSWER_WITHIN_S


def test_load_yaml_keeps_ordinary_anchors() -> None:
    text = "base: &base {lr: 0.1, steps: 3}\nrun: {<<: *base, steps: 5}\nalso: *base\n"
    assert load_yaml(text) == yaml.safe_load(text)
    with pytest.raises(YAMLLimitError):
        load_yaml(text, max_nodes=10)


COMMANDS: dict[str, Callable[[Path], list[str]]] = {
    "train": lambda f: ["train", "run", str(f)],
    "eval": lambda f: ["eval", "run", str(f), "--model", "tiny"],
    "pipeline": lambda f: ["pipeline", "dag", str(f)],
    "deploy": lambda f: ["deploy", "apply", str(f)],
    "loop": lambda f: ["loop", "once", "--config", str(f)],
    "serve": lambda f: ["serve", "--config", str(f)],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", list(HOSTILE_YAML))
def test_cli_names_the_file_of_a_hostile_yaml(
    cli: Callable[..., object], tmp_path: Path, command: str, case: str
) -> None:
    text, needle = HOSTILE_YAML[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    result = cli(*COMMANDS[command](path))
    elapsed = time.monotonic() - started
    assert elapsed < ANSWER_WITHIN_S, f"{command} took {elapsed:.1f}s"
    assert result.code == 2, (result.code, result.out[-300:], result.err[-300:])  # type: ignore[attr-defined]
    err: str = result.err  # type: ignore[attr-defined]
    assert needle in err and path.name in err, err[-500:]
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3, err[-500:]


def test_gateway_config_and_alert_rules_refuse_an_alias_bomb(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(_bomb(), encoding="utf-8")
    with pytest.raises(InvalidInput, match="expands to more than"):
        GatewayConfig.from_yaml(path)
    with pytest.raises(InvalidInput, match="expands to more than"):
        load_alert_rules(_bomb())
