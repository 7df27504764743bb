"""Model cards: markdown generated from what the registry, tracking and lineage know.

Only recorded facts go in; a section with nothing recorded says so rather than inventing text.
"""

from __future__ import annotations

import json
from typing import Any

from llmops.registry.client import Registry
from llmops.registry.lineage import DatasetNode, lineage
from llmops.registry.records import ModelVersionInfo
from llmops.tracking import RunInfo, Tracker

EVALUATION_EXPERIMENT = "eval"  # the tracking experiment of evaluation runs (llmops.evals.runner)
GATES_TAG = "gates"  # the run tag holding an evaluation run's gate results as JSON


def render_card(registry: Registry, ref: str) -> str:
    info = lineage(registry, ref)
    version = info.version
    lines = [
        f"# Model card: {version.name} v{version.version}",
        "",
        version.description or "_No description was recorded for this version._",
        "",
        "## Identity",
        "",
        "| field | value |",
        "|---|---|",
        f"| reference | `{version.ref}` |",
        f"| format | {version.format} |",
        f"| digest (sha256 of manifest) | `{version.digest}` |",
        f"| aliases | {', '.join(version.aliases) or 'none'} |",
        f"| created | {version.created_at.isoformat(timespec='seconds')} by {version.creator} |",
        f"| base version | {version.base or 'none (trained from scratch or imported)'} |",
        "",
        "## Training data",
        "",
    ]
    lines += _dataset_lines(info.datasets) or ["No dataset versions were linked to this version."]
    lines += ["", "## Input format", ""]
    lines += _input_format_lines(version.tags.get("input_format"))
    lines += ["", "## Training run", ""]
    if info.run is None:
        lines.append("No training run was linked to this version.")
    else:
        lines.append(
            f"Run `{info.run.id}` ({info.run.name}) in experiment `{info.run.experiment}`: {info.run.status}."
        )
        if info.run.params:
            lines += ["", "| parameter | value |", "|---|---|"]
            lines += [f"| {k} | {_cell(v)} |" for k, v in sorted(info.run.params.items())]
    lines += ["", "## Evaluation", ""]
    lines += _evaluation_lines(registry, version)
    if version.metrics:
        lines += ["", "Metrics recorded on the version (training):", ""]
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in sorted(version.metrics.items())]
    lines += ["", "## Lineage", ""]
    lines.append("Ancestors: " + (" → ".join(a.ref for a in info.ancestors) or "none"))
    lines.append("")
    lines.append("Descendants: " + (", ".join(info.descendants) or "none"))
    return "\n".join(lines) + "\n"


def _evaluation_lines(registry: Registry, version: ModelVersionInfo) -> list[str]:
    """The version's evaluation runs (newest first) with their scores, then each run's gates."""
    runs = Tracker(registry.store, registry.artifacts).find_runs(
        EVALUATION_EXPERIMENT, {"model_digest": version.digest}
    )
    if not runs:
        return ["No evaluation runs are recorded for this version yet (`llmops eval run SUITE --model REF`)."]
    lines = ["| run | suite | dataset | examples | scores | gates |", "|---|---|---|---|---|---|"]
    gated: list[tuple[RunInfo, dict[str, Any]]] = []
    for run in runs:
        gates = _run_gates(run, version)
        if gates is not None:
            gated.append((run, gates))
        verdict = "-" if gates is None else ("passed" if gates.get("passed") else "failed")
        scores = ", ".join(f"{k} {v:.4g}" for k, v in sorted(run.latest_metrics.items())) or "-"
        lines.append(
            f"| `{run.id[:12]}` | {_cell(run.params.get('suite', '-'))} | "
            f"{_cell(run.params.get('dataset', '-'))} | {run.params.get('examples', '-')} | "
            f"{_cell(scores)} | {verdict} |"
        )
    for run, gates in gated:
        lines += ["", f"Gates of run `{run.id[:12]}` ({_cell(run.params.get('suite', '-'))}):", ""]
        lines += ["| gate | result | observed | threshold | reason |", "|---|---|---|---|---|"]
        for gate in gates.get("gates", []):
            lines.append(
                f"| {_cell(gate.get('name'))} | {'pass' if gate.get('passed') else 'fail'} | "
                f"{_number(gate.get('observed'))} | {_number(gate.get('threshold'))} | "
                f"{_cell(gate.get('reason', ''))} |"
            )
    return lines


def _run_gates(run: RunInfo, version: ModelVersionInfo) -> dict[str, Any] | None:
    if GATES_TAG in run.tags:
        stored: dict[str, Any] = json.loads(run.tags[GATES_TAG])
        return stored
    on_version = version.tags.get(f"gates/{run.params.get('suite')}")
    if isinstance(on_version, dict) and on_version.get("run") == run.id:
        return on_version
    return None


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def _input_format_lines(recorded: object) -> list[str]:
    """How the version expects its input (the ``input_format`` tag training recorded)."""
    if not isinstance(recorded, dict):
        return [
            "No input format was recorded: prompts get the tokenizer's bos (when it has one) and "
            "conversations its chat template (when it has one)."
        ]
    chat = {
        "template": "the tokenizer's chat template (`/v1/chat/completions` renders it)",
        "prompt": "exactly one user message, encoded as the raw prompt; other conversations are "
        "refused with 400 (use `/v1/completions`)",
        "none": "not accepted: `/v1/chat/completions` answers 400, use `/v1/completions`",
    }.get(str(recorded.get("chat")), str(recorded.get("chat")))
    bos = recorded.get("bos_token") if recorded.get("add_bos") else None
    stops = ", ".join(f"`{t}`" for t in recorded.get("stop_tokens") or ()) or "the model's eos"
    trained = recorded.get("trained_on")
    return [
        "| field | value |",
        "|---|---|",
        f"| trained on | {_cell(f'{trained} rows' if trained else 'not recorded')} |",
        f"| raw prompt (`/v1/completions`) | {_cell(f'`{bos}` + prompt text' if bos else 'prompt text')} |",
        f"| conversation | {_cell(chat)} |",
        f"| generation stops at | {_cell(stops)} |",
    ]


def _dataset_lines(nodes: tuple[DatasetNode, ...], indent: int = 0) -> list[str]:
    out = []
    for node in nodes:
        role = f" ({node.role})" if node.role else ""
        step = (
            f", made by `{node.transform.get('name')}`"
            if node.transform and node.transform.get("name")
            else ""
        )
        out.append(
            f"{'  ' * indent}- `{node.name}@{node.version}`{role}: {node.num_rows} rows, "
            f"digest `{node.digest[:12]}`{step}"
        )
        out += _dataset_lines(node.parents, indent + 1)
    return out


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
