"""Curation: labelled, scrubbed, deduplicated rows with lineage to request ids; too few rows stop."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.loop.conftest import LoopWorld, give_feedback, hours_ago, log_request

from llmops.data.versions import DatasetStore
from llmops.errors import UpstreamError
from llmops.loop.config import parse_config
from llmops.loop.curation import curate
from llmops.loop.labels import build_labelers
from llmops.privacy.subject import find_subject
from llmops.security.redaction import ScrubRedactor


def _traffic(world: LoopWorld, n: int) -> list[str]:
    ids = []
    for i in range(n):
        request = log_request(world.home, f"wie lange dauert lieferung {i} nach zone {i * 7}", f"served {i}",
                              user=f"user-{i % 3}")  # fmt: skip
        if i % 2:
            give_feedback(world.home, request, thumbs="down", corrected=f"drei tage {i}")
        else:
            give_feedback(world.home, request, thumbs="up")
        ids.append(request)
    return ids


def test_curated_rows_trace_to_request_ids_and_erasure_reaches_them(world: LoopWorld) -> None:
    old = log_request(world.home, "an old prompt from before the cycle", "x", at=hours_ago(48))
    give_feedback(world.home, old, thumbs="up")
    ids = _traffic(world, 40)
    unlabelled = log_request(world.home, "nobody rated this one", "x")
    pii = log_request(world.home, "mail me at jane.doe@example.com about lieferung 99", "ok", user="jane")
    give_feedback(world.home, pii, thumbs="up")
    twin = log_request(world.home, "wie lange dauert lieferung 3 nach zone 21", "again")  # a repeat prompt
    give_feedback(world.home, twin, thumbs="up")
    config = parse_config(world.config)
    done = curate(world.home, config, since=hours_ago(1), until=datetime.now(UTC),
                  labelers=build_labelers(config.curation.labels), detector=ScrubRedactor())  # fmt: skip
    assert done.stop_reason is None and done.train is not None and done.fresh is not None
    datasets = DatasetStore.from_home(world.home)
    train, fresh = datasets.rows(done.train), datasets.rows(done.fresh)
    curated = [r for r in train if r["label_source"] != "replay"]
    assert {r["request_id"] for r in curated + fresh} <= set(ids) | {pii}
    assert old not in done.request_ids and unlabelled not in done.request_ids and twin not in done.request_ids
    assert not {r["prompt"] for r in curated} & {r["prompt"] for r in fresh}  # the slice is never trained on
    assert done.numbers["label_sources"] == {"corrections": 20, "thumbs_up": 22}
    by_id = {r["request_id"]: r for r in curated + fresh}
    assert by_id[ids[1]]["completion"] == "drei tage 1" and by_id[ids[0]]["completion"] == "served 0"
    assert "jane.doe@example.com" not in by_id[pii]["prompt"] and done.numbers["pii_findings"] >= 1
    replayed = [r for r in train if r["label_source"] == "replay"]
    assert len(replayed) == round(len(curated) * 0.25 / 0.75)
    assert done.train.parents == ("orig-train@1",)
    assert done.train.transform is not None and done.train.transform["name"] == "loop.curate"
    # Privacy finds a subject's rows in the curated versions through the rows' user field.
    report = find_subject(world.home, "user-1")
    assert done.train.ref in report.dataset_versions or done.fresh.ref in report.dataset_versions


def test_too_few_rows_stop_the_cycle_without_committing(world: LoopWorld) -> None:
    _traffic(world, 6)
    config = parse_config(world.config)
    done = curate(world.home, config, since=hours_ago(1), until=datetime.now(UTC),
                  labelers=build_labelers(config.curation.labels), detector=None)  # fmt: skip
    assert done.train is None and done.stop_reason is not None
    assert "too few curated training rows" in done.stop_reason and "min_rows 10" in done.stop_reason
    names = [info.name for info in DatasetStore.from_home(world.home).list_datasets()]
    assert not any(name.startswith("bot-curated") for name in names)


def test_an_unreachable_teacher_fails_closed(world: LoopWorld, tmp_path: Path) -> None:
    _traffic(world, 4)
    teacher = {"kind": "teacher", "url": "http://127.0.0.1:9/v1", "model": "t", "timeout_s": 1}
    config = parse_config({**world.config, "curation": {**world.config["curation"], "labels": [teacher]}})
    with pytest.raises(UpstreamError, match="teacher"):
        curate(world.home, config, since=hours_ago(1), until=datetime.now(UTC),
               labelers=build_labelers(config.curation.labels), detector=None)  # fmt: skip


def test_a_human_labelled_file_labels_matching_prompts(world: LoopWorld, tmp_path: Path) -> None:
    ids = [log_request(world.home, f"frage nummer {i} zur rechnung", "?") for i in range(30)]
    lines = [f'{{"prompt": "frage nummer {i} zur rechnung", "completion": "antwort {i}"}}' for i in range(25)]
    (tmp_path / "labels.jsonl").write_text("\n".join(lines) + "\n")
    labels = [{"kind": "file", "path": str(tmp_path / "labels.jsonl")}]
    config = parse_config(
        {**world.config, "curation": {**world.config["curation"], "labels": labels, "replay": None}}
    )
    done = curate(world.home, config, since=hours_ago(1), until=datetime.now(UTC),
                  labelers=build_labelers(config.curation.labels), detector=None)  # fmt: skip
    assert done.numbers["labelled"] == 25 and set(done.request_ids) <= set(ids[:25])
