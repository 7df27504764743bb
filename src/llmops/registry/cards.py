"""Model cards: markdown generated from what the registry, tracking and lineage know.

Only recorded facts go in; a section with nothing recorded says so rather than inventing text.
"""

from __future__ import annotations

from llmops.registry.client import Registry
from llmops.registry.lineage import DatasetNode, lineage


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
    if version.metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in sorted(version.metrics.items())]
    else:
        lines.append("No evaluation results are recorded on this version yet.")
    lines += ["", "## Lineage", ""]
    lines.append("Ancestors: " + (" → ".join(a.ref for a in info.ancestors) or "none"))
    lines.append("")
    lines.append("Descendants: " + (", ".join(info.descendants) or "none"))
    return "\n".join(lines) + "\n"


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
