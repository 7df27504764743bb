"""``bench/engine/gpu_check.py``, the prepared GPU check, run the way the CPU machines can: a tiny
model on the CPU (``--device cpu --tiny``), and refused in one line where CUDA is asked for and absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "engine" / "gpu_check.py"


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    command = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.mark.slow
def test_the_cpu_smoke_run_checks_equality_and_prints_every_table() -> None:
    result = _run("--device", "cpu", "--tiny", "--dtype", "bfloat16", "--requests", "8", "--repeats", "1",
                  "--prompts", "2", "--threads", "1", timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for check in ("greedy float32, alone", "greedy float32, 2 together", "greedy bfloat16, alone"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {check} |"))
        assert "2/2 equal" in row or "near-tie" in row, row
    assert "| greedy float32, alone | 2/2 equal |" in out  # float32 alone: exact
    systems = [line for line in out.splitlines() if line.startswith(("| ours", "| transformers"))]
    assert len(systems) == 3 and "8 requests" in out
    assert "| ours (LLMEngine) |" in systems[0] and systems[0].endswith("| 1.00x |")
    decode = [line for line in out.splitlines() if line.startswith(("| 1 |", "| 8 |"))]
    assert len(decode) == 2 and "4.8 TB/s" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_where_there_is_none_is_refused_before_building_the_model() -> None:
    result = _run("--device", "cuda", timeout=120)
    assert result.returncode != 0
    assert result.stderr.startswith("error: device: 'cuda' is not available")
    assert "available: cpu" in result.stderr and "Traceback" not in result.stderr
