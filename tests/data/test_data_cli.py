"""Dataset versions through the real CLI: ingest, synth, transform, split, show, export."""

from __future__ import annotations

import json
from pathlib import Path

from llmops.data.versions import DatasetStore
from llmops.store.home import open_home


def test_ingest_is_content_addressed_and_versioned(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(10)))
    first = cli("data", "ingest", src, "--name", "docs")
    assert first.code == 0 and "docs@1: 10 rows" in first.out
    again = cli("data", "ingest", src, "--name", "docs")
    assert "docs@1" in again.out, "the same content is the same version"
    src.write_text(src.read_text() + json.dumps({"text": "row 10"}) + "\n")
    assert "docs@2: 11 rows" in cli("data", "ingest", src, "--name", "docs").out


def test_malformed_row_names_file_line_and_field(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "bad.jsonl"
    src.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": 3}\n')
    bad = cli("data", "ingest", src, "--name", "x")
    assert bad.code == 2 and "bad.jsonl" in bad.err and "line 2" in bad.err and "completion" in bad.err
    skipped = cli("data", "ingest", src, "--name", "x", "--skip-invalid")
    assert skipped.code == 0 and "skipped 1 invalid rows" in skipped.out


def test_synth_dedup_split_lineage_and_export(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("data", "synth", "intent", "--name", "intent", "--n", "300", "--seed", "1").code == 0
    dedup = cli("data", "transform", "intent", "dedup-exact", "--name", "intent-clean")
    assert dedup.code == 0 and '"name": "dedup_exact"' in dedup.out
    split = cli("data", "split", "intent-clean", "--key", "prompt", "--seed", "0")
    assert split.code == 0 and "intent-clean-train@1" in split.out and "intent-clean-test@1" in split.out
    store = DatasetStore.from_home(open_home())
    train = store.get("intent-clean-train")
    test = store.get("intent-clean-test")
    assert train.parents == ("intent-clean@1",) and store.get("intent-clean").parents == ("intent@1",)
    train_prompts = {r["prompt"] for r in store.rows(train)}
    assert not train_prompts & {r["prompt"] for r in store.rows(test)}, "split by prompt never leaks"
    shown = cli("data", "show", "intent-clean-train@1")
    assert shown.code == 0 and "parents: intent-clean@1" in shown.out and "length histogram" in shown.out
    out = tmp_path / "train.parquet"
    assert cli("data", "export", "intent-clean-train", "-o", out).code == 0 and out.stat().st_size > 0
    listed = cli("data", "list")
    assert "intent-clean-train" in listed.out and "split" in listed.out


def test_bad_requests_are_clear(cli) -> None:  # type: ignore[no-untyped-def]
    assert "unknown" in cli("data", "synth", "poetry", "--name", "p").err.lower()
    assert cli("data", "show", "nothing").code == 2
    cli("data", "synth", "arithmetic", "--name", "a", "--n", "20")
    wrong = cli("data", "transform", "a", "shuffle")
    assert wrong.code == 2 and "dedup-exact" in wrong.err


def test_scrub_pii_step_redacts_and_records_findings(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "support.jsonl"
    rows = [
        {"prompt": "My email is jane.doe@example.com, where is my order?", "completion": "On its way."},
        {"prompt": "Card 4111 1111 1111 1111 was charged twice", "completion": "Refund started."},
        {"prompt": "Order 12345 is late", "completion": "Sorry."},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli("data", "ingest", src, "--name", "support").code == 0
    scrubbed = cli("data", "transform", "support", "scrub-pii", "--name", "support-clean")
    assert scrubbed.code == 0, scrubbed.err
    text = json.dumps(DatasetStore.from_home(open_home()).rows("support-clean"))
    assert "jane.doe@example.com" not in text and "4111 1111 1111 1111" not in text
    assert "Order 12345" in text, "order numbers are not personal data"
    assert '"findings": 2' in scrubbed.out
