"""``bench/engine/decode_kernel.py`` runs from the repository root and prints one row per shape,
thread count and context, after checking the kernel's answers against gather + SDPA."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "engine" / "decode_kernel.py"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None, reason="no C++ compiler")
def test_the_kernel_benchmark_prints_a_row_per_shape_and_context() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    small = ["--threads", "1", "--contexts", "17,40", "--blocks", "64", "--calls", "2", "--rounds", "1"]
    command = [sys.executable, str(SCRIPT), *small]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "x |" in line]
    assert len(rows) == 4  # two shapes x two contexts
    assert all(line.split(" | ")[1] == "1" for line in rows)
    assert {line.split(" | ")[2] for line in rows} == {"17", "40"}
