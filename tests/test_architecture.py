"""Enforce ARCHITECTURE.md: layer order, no cycles, and the hard rules, over every import."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "llmops"


def parse_architecture(text: str) -> tuple[dict[str, int], list[tuple[str, list[str]]]]:
    layers_block = re.search(r"```layers\n(.*?)```", text, re.S)
    rules_block = re.search(r"```rules\n(.*?)```", text, re.S)
    assert layers_block and rules_block, "ARCHITECTURE.md must have a ```layers and a ```rules block"
    layer_of = {pkg: i for i, line in enumerate(layers_block.group(1).splitlines()) for pkg in line.split()}
    rules = []
    for line in rules_block.group(1).splitlines():
        if line.strip():
            who, _, banned = line.partition(" must-not-import ")
            rules.append((who.strip(), banned.split()))
    return layer_of, rules


def imports_by_package(src: Path) -> dict[str, set[str]]:
    """package -> every module name it imports (top level and inside functions)."""
    found: dict[str, set[str]] = {}
    for file in src.rglob("*.py"):
        rel = file.relative_to(src).parts
        package = rel[0].removesuffix(".py") if len(rel) > 0 else ""
        if package in ("__init__", "__main__"):
            continue
        names = found.setdefault(package, set())
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
    return found


def violations(src: Path, architecture: str) -> list[str]:
    layer_of, rules = parse_architecture(architecture)
    imports = imports_by_package(src)
    problems = []
    edges: dict[str, set[str]] = {}
    for package, names in sorted(imports.items()):
        if package not in layer_of:
            problems.append(f"package {package!r} is not placed in a layer in ARCHITECTURE.md")
            continue
        for name in names:
            if not name.startswith("llmops."):
                continue
            target = name.split(".")[1]
            if target == package:
                continue
            edges.setdefault(package, set()).add(target)
            if target in layer_of and layer_of[target] > layer_of[package]:
                problems.append(f"{package} imports {name} from a higher layer")
        for who, banned in rules:
            if who in ("*", package):
                for name in names:
                    for ban in banned:
                        if (name == ban or name.startswith(ban + ".")) and package != ban.removeprefix(
                            "llmops."
                        ):
                            problems.append(f"{package} imports {name}, which ARCHITECTURE.md forbids")
    problems += [f"import cycle: {' -> '.join(c)}" for c in _cycles(edges)]
    return problems


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "active"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "active":
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    return cycles


def test_the_code_follows_architecture_md() -> None:
    problems = violations(SRC, (ROOT / "ARCHITECTURE.md").read_text())
    assert problems == []


def test_the_checker_catches_violations(tmp_path: Path) -> None:
    src = tmp_path / "llmops"
    for pkg, body in {
        "store": "import torch\nfrom llmops.registry import x\n",
        "registry": "from llmops.store import y\n",
        "engine": "def f():\n    from llmops.gateway import z\n",
        "gateway": "from llmops.engine import w\nimport llmops.cli\n",
        "newthing": "",
    }.items():
        (src / pkg).mkdir(parents=True)
        (src / pkg / "__init__.py").write_text(body)
    architecture = (ROOT / "ARCHITECTURE.md").read_text()
    problems = "\n".join(violations(src, architecture))
    assert "store imports llmops.registry from a higher layer" in problems
    assert "store imports torch" in problems
    assert "engine imports llmops.gateway" in problems
    assert "gateway imports llmops.engine" in problems
    assert "gateway imports llmops.cli" in problems
    assert "import cycle: engine -> gateway -> engine" in problems
    assert "'newthing' is not placed" in problems
