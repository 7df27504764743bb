"""The images' install recipe (docker/install.sh) run in a fresh virtual environment, as the
Dockerfiles run it. A full install takes minutes (torch and transformers), so the test checks the
whole resolution with pip's ``--dry-run`` (every pin and extra resolves, torch is the CPU build) and
really installs torch and llmops without their dependencies (the script's commands, the project's
build and its ``llmops`` entry point). The pip cache is reused; the torch wheel comes from pip's
configured indexes (``TORCH_INDEX_URL`` empty) since the PyTorch index may be unreachable in CI."""

from __future__ import annotations

import os
import re
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "docker" / "install.sh"


def _run_script(env_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    venv.EnvBuilder(with_pip=True).create(env_dir)
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environ.update(PATH=f"{env_dir / 'bin'}:{environ['PATH']}", TORCH_INDEX_URL="", **env)
    return subprocess.run(
        ["sh", str(SCRIPT), str(ROOT)], env=environ, capture_output=True, text=True, timeout=540, check=False
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_install_script_resolves_every_dependency_with_the_cpu_torch(tmp_path: Path) -> None:
    result = _run_script(tmp_path / "venv", PIP_INSTALL_ARGS="--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    would = re.findall(r"^Would install (.*)$", result.stdout, flags=re.M)
    assert len(would) == 2  # torch first, then llmops with its extras
    packages = would[1].split()
    assert "llmops-0.1.0" in packages
    names = {p.rsplit("-", 1)[0].lower().replace("_", "-") for p in packages}
    assert {"fastapi", "uvicorn", "psycopg", "redis", "prometheus-client", "transformers"} <= names
    for step in would:  # the constraint keeps llmops's resolution on the pinned torch
        assert any(p.startswith("torch-2.13.0") for p in step.split()), step


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_install_script_installs_llmops_and_its_entry_point(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    result = _run_script(env_dir, PIP_INSTALL_ARGS="--no-deps", LLMOPS_EXTRAS="")
    assert result.returncode == 0, result.stderr[-3000:]
    python = env_dir / "bin" / "python"
    versions = subprocess.run(
        [str(python), "-c", "from importlib.metadata import version as v; print(v('llmops'), v('torch'))"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    assert versions[0] == "0.1.0"
    assert versions[1].startswith("2.13.0")
    entry = (env_dir / "bin" / "llmops").read_text()
    assert "from llmops.cli.main import entry" in entry
