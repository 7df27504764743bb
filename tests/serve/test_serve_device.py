"""``llmops replica --device/--dtype`` (and ``llmops serve --model``): the flags reach the engine,
and a device this machine lacks is one line on stderr and a non-zero exit, before any model loads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


@pytest.mark.parametrize("command", [("replica",), ("serve",)])
def test_help_lists_the_device_and_dtype_flags(cli: Callable[..., Any], command: tuple[str, ...]) -> None:
    result = cli(*command, "--help")
    assert result.code == 0
    assert "--device" in result.out and "--dtype" in result.out


def test_the_flags_reach_the_engine_config(cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import llmops.cli.replica as cli_module

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(cli_module, "run_replica", lambda model, config, **kw: calls.append(kw))
    result = cli("replica", "--model", "m", "--device", "cpu", "--dtype", "bfloat16")
    assert result.code == 0, result.err
    assert (calls[0]["engine"].device, calls[0]["engine"].dtype) == ("cpu", "bfloat16")
    assert "(cpu bfloat16, OpenMP " in result.out  # the runtime the CPU engine runs on follows


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_a_one_line_error(
    cli: Callable[..., Any], tiny_model_dir: Path, device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmops.cli.replica as cli_module

    monkeypatch.setattr(cli_module, "run_replica", lambda *a, **k: pytest.fail("the model must not load"))
    result = cli("replica", "--model", str(tiny_model_dir), "--device", device)
    assert result.code == 2
    assert result.err.startswith(f"error: device: '{device}' is not available")
    assert "available: cpu" in result.err and "Traceback" not in result.err + result.out
    assert len(result.err.strip().splitlines()) == 1


@pytest.mark.parametrize(("flag", "value"), [("--device", "gpu"), ("--dtype", "fp8")])
def test_a_misspelt_value_names_the_field(cli: Callable[..., Any], flag: str, value: str) -> None:
    result = cli("replica", "--model", "m", flag, value)
    assert result.code != 0
    assert flag.removeprefix("--") in result.err and "Traceback" not in result.err
