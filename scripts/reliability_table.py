"""Print the table of docs/reliability.md from the JSON lines the reliability scenarios wrote.

LLMOPS_RELIABILITY_REPORT=/tmp/rel.jsonl pytest tests/reliability -m slow -s
python scripts/reliability_table.py /tmp/rel.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COLUMNS = (
    "scenario",
    "injected",
    "sent",
    "answered",
    "failed",
    "rows lost",
    "RSS MiB before/after",
    "recovery",
)


def _cell(value: Any) -> str:
    return "–" if value is None else str(value)


def _failed(row: dict[str, Any]) -> str:
    refused = row.get("refused_429_503", row.get("refused_503"))
    text = _cell(row.get("failed"))
    return f"{text} (+{refused} refused 503/429)" if refused else text


def _rss(row: dict[str, Any]) -> str:
    if "rss_mib_before" not in row:
        return "–"
    return f"{row['rss_mib_before']} / {_cell(row.get('rss_mib_after'))}"


def _recovery(row: dict[str, Any]) -> str:
    return "–" if row.get("recovery_s") is None else f"{row['recovery_s']} s"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = (
            row["scenario"],
            row["injected"],
            _cell(row.get("sent")),
            _cell(row.get("answered")),
            _failed(row),
            _cell(row.get("rows_lost")),
            _rss(row),
            _recovery(row),
        )
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    rows = [json.loads(line) for line in Path(sys.argv[1]).read_text().splitlines() if line.strip()]
    print(table(rows))


if __name__ == "__main__":
    main()
