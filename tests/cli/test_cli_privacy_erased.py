"""After `llmops privacy erase`, an erased dataset version says so and its successor counts tokens."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import CliRunner

ROWS = [
    {"prompt": f"where is my order number {i}?", "completion": "It ships today.", "user": user}
    for i, user in enumerate(["alice", "bob", "carol", "alice", "dave"])
]


def test_erased_version_is_marked_and_its_export_says_why(cli: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    ingested = cli("data", "ingest", source, "--name", "curated")
    assert ingested.code == 0 and ingested.out.startswith("curated@1: 5 rows")

    report = cli("privacy", "report", "--subject", "alice")
    assert report.code == 0 and "dataset curated@1: 2 rows" in report.out
    erased = cli("privacy", "erase", "--subject", "alice", "--reason", "ticket-1")
    assert erased.code == 0, erased.err
    assert "dataset curated@1 replaced by curated@2" in erased.out

    shown = cli("data", "show", "curated@1")
    assert shown.code == 0 and "ERASED: curated@1 was erased by `llmops privacy erase`" in shown.out
    assert "the remaining rows are in curated@2" in shown.out

    exported = cli("data", "export", "curated@1", "--output", tmp_path / "out.jsonl")
    assert exported.code == 2
    assert "curated@1 was erased" in exported.err and "no artifact with digest" not in exported.err

    successor = cli("data", "show", "curated@2", "--json")
    info = json.loads(successor.out)
    assert info["num_rows"] == 3
    expected = sum(len(f"{r['prompt']}\n{r['completion']}".split()) for r in ROWS if r["user"] != "alice")
    assert info["num_tokens"] == expected
    assert cli("data", "export", "curated@2", "--output", tmp_path / "ok.jsonl").code == 0


def test_fully_erased_dataset_is_marked_in_the_list(cli: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text(json.dumps({"prompt": "hello there", "completion": "hi", "user": "alice"}) + "\n")
    assert cli("data", "ingest", source, "--name", "only-alice").code == 0
    assert cli("privacy", "erase", "--subject", "alice").code == 0
    listed = cli("data", "list")
    assert "1 (erased)" in listed.out
    shown = cli("data", "show", "only-alice@1")
    assert "no rows remained" in shown.out
