"""The pipeline's graph as text (one line per stage with what it waits for) and as Mermaid."""

from __future__ import annotations

from llmops.pipelines.spec import STAGE_REF, Pipeline, _walk


def edges(pipeline: Pipeline) -> list[tuple[str, str, str]]:
    """(from stage, to stage, label): the outputs read, or `after` for an ordering-only edge."""
    found = []
    for name in pipeline.order:
        stage = pipeline.stages[name]
        read: dict[str, set[str]] = {}
        for text in _walk(stage.raw):
            for other, key in STAGE_REF.findall(text):
                read.setdefault(other, set()).add(key)
        for dep in stage.depends_on:
            found.append((dep, name, ", ".join(sorted(read.get(dep, set()))) or "after"))
    return found


def text(pipeline: Pipeline) -> str:
    lines = [f"pipeline {pipeline.name}"]
    incoming: dict[str, list[str]] = {}
    for source, target, label in edges(pipeline):
        reads = (
            [f"{source}.{key}" for key in label.split(", ")] if label != "after" else [f"{source} (after)"]
        )
        incoming.setdefault(target, []).extend(reads)
    for name in pipeline.order:
        stage = pipeline.stages[name]
        needs = incoming.get(name)
        lines.append(f"  {name} [{stage.kind.kind}]" + (f" ← {', '.join(needs)}" if needs else ""))
    return "\n".join(lines)


def mermaid(pipeline: Pipeline) -> str:
    lines = ["flowchart TD"]
    for name in pipeline.order:
        lines.append(f'  {name}["{name}<br/><small>{pipeline.stages[name].kind.kind}</small>"]')
    for source, target, label in edges(pipeline):
        arrow = "-.->" if label == "after" else f"-->|{label}|"
        lines.append(f"  {source} {arrow} {target}")
    return "\n".join(lines)
