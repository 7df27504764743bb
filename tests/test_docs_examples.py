"""README.md and docs/*.md examples run as written, so the documentation cannot drift from the code.

Convention: a fenced ``bash`` or ``python`` block preceded by the line ``<!-- docs-test -->`` is
executed by this test; ``<!-- docs-test slow -->`` marks one that trains (run under
``@pytest.mark.slow``, scaled down, see below). Unmarked blocks are not run (they need servers,
keys or data the reader brings). Each block runs on its own in a fresh temp folder holding links
to the repository's ``src/`` and ``examples/``, with ``LLMOPS_HOME`` a fresh home there and an
``llmops`` command on ``PATH`` that runs this checkout. Bash blocks run with ``set -euo pipefail``;
Python blocks with this interpreter. A block passes when it exits 0.

Slow blocks are scaled down by plain text substitutions (``SCALE_DOWN``): the demo recipe becomes a
tiny recipe of the same shape, datasets are smaller, and ``eval run`` may exit 1 (a gate failed:
the documented outcome for a tiny model) but not 2 (an error).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKED = re.compile(r"^<!-- docs-test( slow)? -->\n```(bash|python)\n(.*?)^```", re.S | re.M)
DEMO_RECIPE = "src/llmops/train/recipes/demo-intent.yaml"


@dataclass(frozen=True)
class Example:
    source: str  # file:line
    language: str
    code: str
    slow: bool


def _examples() -> list[Example]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for match in MARKED.finditer(text):
            line = text[: match.start()].count("\n") + 1
            found.append(
                Example(f"{path.relative_to(ROOT)}:{line}", match[2], match[3], match[1] is not None)
            )
    return found


EXAMPLES = _examples()


def _scale_down(code: str) -> str:
    """The slow blocks' commands, sized for a test (see the module docstring)."""
    lines = []
    for line in code.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line)  # trailing comments ("  # ..."; no command holds one)
        line = line.replace(DEMO_RECIPE, "$DOCS_TEST_RECIPE").replace("--n 2000", "--n 400")
        if line.startswith("llmops eval run"):
            line += " --limit 16 || [ $? -eq 1 ]"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _tiny_recipe(folder: Path) -> Path:
    recipe = yaml.safe_load((ROOT / DEMO_RECIPE).read_text())
    recipe["model"].update(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1)
    recipe["tokenizer"]["vocab_size"] = 300
    recipe["optim"].update(max_steps=6, warmup_steps=1, batch_size=8)
    recipe.update(eval_every=3, checkpoint_every=6, max_seq_len=64)
    path = folder / "demo-intent-tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _environment(folder: Path) -> dict[str, str]:
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "llmops"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m llmops "$@"\n')
    shim.chmod(0o755)
    for name in ("src", "examples"):
        (folder / name).symlink_to(ROOT / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOPS_")}
    env.update(
        HOME=str(folder),  # `~` in an example (export LLMOPS_HOME=~/.llmops) stays in the temp folder
        LLMOPS_HOME=str(folder / "home"),
        LLMOPS_ACTOR="docs-test",
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        OMP_NUM_THREADS="1",
        DOCS_TEST_RECIPE=str(_tiny_recipe(folder)),
    )
    return env


def test_the_docs_mark_examples_to_run() -> None:
    """The marker is in use where the first steps are documented (a renamed marker fails here)."""
    sources = {example.source.split(":")[0] for example in EXAMPLES}
    assert {"README.md", "docs/security.md"} <= sources
    assert any(example.slow for example in EXAMPLES)


@pytest.mark.parametrize(
    "example",
    [
        pytest.param(example, id=example.source, marks=[pytest.mark.slow] if example.slow else [])
        for example in EXAMPLES
    ],
)
def test_documented_example_runs(example: Example, tmp_path: Path) -> None:
    env = _environment(tmp_path)
    code = _scale_down(example.code) if example.slow else example.code
    if example.language == "bash":
        command = ["bash", "-euo", "pipefail", "-c", code]
    else:
        command = [sys.executable, "-c", code]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900 if example.slow else 180
    )
    assert done.returncode == 0, (
        f"{example.source} failed (exit {done.returncode}):\n{code}\n--- stdout\n{done.stdout[-4000:]}"
        f"\n--- stderr\n{done.stderr[-4000:]}"
    )
