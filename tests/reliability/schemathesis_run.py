"""Run schemathesis (``--checks all``, every phase: examples, coverage, fuzzing, stateful) against an
app served on loopback, and read its summary.

The CLI runs in a subprocess (its own working directory, so its caches stay out of the repository)
against a uvicorn server in this process; generation is deterministic and bounded by
``max_examples``, so a run takes tens of seconds. The examples, coverage and fuzzing phases give
the same cases every time; the stateful phase follows the server's answers, so its scenarios vary.
Every request and answer is kept as a HAR file under ``workdir/report`` to replay a failure.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers import serving

_CASES = re.compile(r"(\d+) generated")
_FAILURES = re.compile(r"(\d+) unique failures?")


@dataclass(frozen=True)
class SchemathesisRun:
    returncode: int
    output: str

    @property
    def cases(self) -> int:
        found = _CASES.search(self.output)
        return int(found.group(1)) if found else 0

    @property
    def failures(self) -> int:
        found = _FAILURES.search(self.output)
        return int(found.group(1)) if found else 0


def run_schemathesis(
    app: Any,
    workdir: Path,
    *,
    max_examples: int,
    headers: dict[str, str] | None = None,
    config_toml: str = "",
) -> SchemathesisRun:
    """``config_toml`` is a ``schemathesis.toml`` (per-operation phases and checks, say)."""
    config = workdir / "schemathesis.toml"
    config.write_text(config_toml)
    with serving(app) as url:
        command = [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(config),
            "run", f"{url}/openapi.json",
            "--checks", "all",
            "--max-examples", str(max_examples),
            "--generation-deterministic",
            "--request-timeout", "30",
            "--no-color", "--report", "har", "--report-dir", str(workdir / "report"),
        ]  # fmt: skip
        for name, value in (headers or {}).items():
            command += ["-H", f"{name}: {value}"]
        done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600, check=False)
    return SchemathesisRun(done.returncode, done.stdout + done.stderr)
