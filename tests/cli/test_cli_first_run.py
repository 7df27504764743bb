"""What a new user trips on: every CLI error is one line in llmops' words, with a non-zero exit.

No tracebacks, no click usage banners, no links to pydantic's site; ``--debug`` shows the trace.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import CliRunner

import llmops.cli.main as cli_main


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "errors.pydantic.dev" not in err and "Traceback" not in err and "Usage:" not in err
    return lines[0]


def test_bad_invocations_get_one_line_each(cli: CliRunner, tmp_path: Path) -> None:
    bad_yaml = tmp_path / "gateway.yaml"
    bad_yaml.write_text("port: abc\ndeployments: [{name: x}]\n")
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    cases: list[tuple[tuple[str, ...], str]] = [
        (("serve", "--port", "abc"), "Invalid value for '--port'"),
        (("serve", "--port", "abc"), "(see 'llmops serve --help')"),
        (("nosuch",), "No such command 'nosuch'"),
        (("keys", "create"), "Missing option '--name'"),
        (("eval", "run", "--suite", "x"), "No such option: --suite"),
        (("serve", "--config", str(tmp_path / "missing.yaml")), "cannot read gateway config"),
        (("serve", "--config", str(bad_yaml)), "port: Input should be a valid integer"),
        (("serve", "--workers", "0"), "workers: Input should be greater than or equal to 1"),
        (("serve", "--deployment", "bot"), "use NAME=URL"),
        (("--home", str(not_a_folder / "home"), "runs", "list"), f"cannot use {not_a_folder / 'home'}"),
        (("models", "show", "nosuch@1"), "no registered model 'nosuch'"),
        (("replica", "--model", str(tmp_path / "no-model")), "model path does not exist"),
    ]
    for args, expected in cases:
        result = cli(*args)
        assert result.code == 2, (args, result.err)
        assert expected in one_line(result.err), (args, result.err)


def test_serve_model_without_a_price_names_the_flags_and_why(cli: CliRunner) -> None:
    for args in (("--model", "tiny@1"), ("--deployment", "bot=http://127.0.0.1:8001")):
        result = cli("serve", *args)
        assert result.code == 2
        line = one_line(result.err)
        assert "needs a price" in line and "--free" in line and "--usd-per-engine-second RATE" in line
        assert "budgets" in line  # why: what the price is for


def test_an_unexpected_failure_is_one_line_and_debug_shows_the_trace(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**_: object) -> None:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(cli_main, "app", broken)
    result = cli("runs", "list")
    assert result.code == 3
    assert one_line(result.err) == (
        "error: unexpected RuntimeError: disk on fire second line (run again with --debug for the traceback)"
    )
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli("--debug", "runs", "list")


def test_debug_keeps_clicks_usage_text(cli: CliRunner) -> None:
    result = cli("--debug", "serve", "--port", "abc")
    assert result.code == 2 and "Usage: llmops serve" in result.err


def test_an_area_alone_prints_its_help(cli: CliRunner) -> None:
    result = cli("keys")
    assert "Usage: llmops keys" in result.out + result.err and "error:" not in result.err
