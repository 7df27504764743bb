"""Configuration errors are one line naming the setting, without pydantic's boilerplate or links."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import CliRunner

from llmops.settings import reset_settings


def _one_clean_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "errors.pydantic.dev" not in err and "Traceback" not in err and "validation error" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("variable", "value", "command", "expected"),
    [
        ("LLMOPS_TRACE_SAMPLE_RATIO", "5", ("runs", "list"), "LLMOPS_TRACE_SAMPLE_RATIO: Input should be"),
        (
            "LLMOPS_RETENTION_AUDIT_DAYS",
            "30",
            ("privacy", "purge", "--dry-run"),
            "LLMOPS_RETENTION_AUDIT_DAYS is 30: retention of audit events must be at least 180 days",
        ),
        (
            "LLMOPS_RETENTION_FEEDBACK_DAYS",
            "-1",
            ("privacy", "purge", "--dry-run"),
            "LLMOPS_RETENTION_FEEDBACK_DAYS: Input should be greater than 0",
        ),
    ],
)
def test_bad_setting_names_the_variable(
    variable: str,
    value: str,
    command: tuple[str, ...],
    expected: str,
    cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(variable, value)
    reset_settings()
    result = cli(*command)
    assert result.code == 2
    assert expected in _one_clean_line(result.err)


def test_bad_gateway_config_names_the_field(cli: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("port: abc\n")
    result = cli("serve", "--config", config)
    assert result.code == 2
    line = _one_clean_line(result.err)
    assert f"gateway config {config}: port: Input should be a valid integer" in line
