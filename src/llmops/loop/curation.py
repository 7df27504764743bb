"""Curation: a training set and a fresh evaluation slice from what production saw since the last cycle.

From the request log of the loop's deployment in ``[since, until)`` (shadow copies and failed
requests left out), each prompt is labelled by the first configured source that can, personal data
is redacted with the security PII detector (as the data ``scrub-pii`` step does), exact and near
duplicate prompts are dropped (the data package's dedup, so one prompt never lands on both sides of
the split), and a fresh evaluation slice is held out by the hash of the request id: training never
sees it. A replay share of the original training data is mixed into the training rows. Both are
committed as dataset versions whose rows keep ``request_id`` and ``user``: lineage down to each
request, so erasing a subject reaches these datasets as it reaches any other.

Too few rows is not an error: the outcome carries the stop reason and nothing is committed.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llmops.data import cleaning
from llmops.data.cleaning import PIIDetector
from llmops.data.operations import length_stats
from llmops.data.schemas import Row, SchemaKind
from llmops.data.split import split_point
from llmops.data.versions import DatasetStore, DatasetVersionInfo
from llmops.loop.config import LoopConfig
from llmops.loop.labels import Labeler, LoggedPrompt
from llmops.monitor.request_search import RequestFilter, iter_requests
from llmops.store.home import Home


@dataclass(frozen=True)
class Curated:
    """What curation produced: both dataset versions, or the reason it stopped, and its numbers."""

    numbers: dict[str, Any]
    train: DatasetVersionInfo | None = None
    fresh: DatasetVersionInfo | None = None
    stop_reason: str | None = None
    request_ids: tuple[str, ...] = field(default_factory=tuple)


def logged_prompts(
    home: Home, deployment: str, since: datetime | None, until: datetime, limit: int
) -> list[LoggedPrompt]:
    """Answered, non-shadow requests of ``deployment`` in ``[since, until)``, oldest first, with feedback."""
    wanted = RequestFilter(deployment=deployment, since=since, until=until, status=200, limit=limit)
    found = [
        LoggedPrompt(view.id, view.user, view.prompt, view.completion, tuple(view.feedback))
        for view in iter_requests(home.store, wanted)
        if view.shadow_of is None and view.prompt
    ]
    found.reverse()
    return found


def _label(items: list[LoggedPrompt], labelers: list[Labeler]) -> tuple[list[Row], Counter[str]]:
    rows: list[Row] = []
    sources: Counter[str] = Counter()
    for item in items:
        for labeler in labelers:
            completion = labeler.label(item)
            if completion:
                row: Row = {"prompt": item.prompt, "completion": completion, "request_id": item.request_id,
                            "label_source": labeler.source}  # fmt: skip
                if item.user is not None:
                    row["user"] = item.user
                rows.append(row)
                sources[labeler.source] += 1
                break
    return rows, sources


def _dedup_prompts(rows: list[Row], config: LoopConfig) -> tuple[list[Row], dict[str, int]]:
    """Drop rows whose prompt repeats (exactly or nearly) an earlier kept one."""
    proxies = [{"text": row["prompt"], "index": index} for index, row in enumerate(rows)]
    removed = {"exact": 0, "near": 0}
    if config.curation.dedup.exact:
        kept, report = cleaning.dedup_exact(proxies, SchemaKind.TEXT)
        removed["exact"], proxies = report.rows_removed, kept
    threshold = config.curation.dedup.near_threshold
    if threshold is not None and proxies:
        kept, report = cleaning.dedup_near(proxies, SchemaKind.TEXT, threshold=threshold)
        removed["near"], proxies = report.rows_removed, kept
    return [rows[proxy["index"]] for proxy in proxies], removed


def _replay(datasets: DatasetStore, config: LoopConfig, new_rows: int) -> tuple[list[Row], str | None]:
    replay = config.curation.replay
    if replay is None or replay.share == 0:
        return [], None
    info = datasets.get(replay.dataset)
    original = datasets.rows(info)
    wanted = min(len(original), round(new_rows * replay.share / (1.0 - replay.share)))
    sample = random.Random(config.curation.seed).sample(original, wanted)
    return [{**row, "label_source": "replay"} for row in sample], info.ref


def curate(
    home: Home,
    config: LoopConfig,
    *,
    since: datetime | None,
    until: datetime,
    labelers: list[Labeler],
    detector: PIIDetector | None,
) -> Curated:
    """Build the cycle's datasets (see the module docstring); labelers may raise ``UpstreamError``."""
    settings = config.curation
    items = logged_prompts(home, config.deployment, since, until, settings.max_requests)
    rows, sources = _label(items, labelers)
    numbers: dict[str, Any] = {"requests": len(items), "labelled": len(rows), "label_sources": dict(sources)}
    if detector is not None and settings.scrub_pii and rows:
        rows, report = cleaning.scrub_pii(rows, SchemaKind.PROMPT_COMPLETION, detector)
        numbers["pii_findings"] = report.findings
    rows, removed = _dedup_prompts(rows, config)
    numbers["duplicates_removed"] = removed
    fresh = [r for r in rows if split_point(r["request_id"], settings.seed) < settings.eval_slice]
    train = [r for r in rows if split_point(r["request_id"], settings.seed) >= settings.eval_slice]
    numbers |= {"train_rows": len(train), "fresh_rows": len(fresh)}
    if len(train) < settings.min_rows:
        reason = f"too few curated training rows: {len(train)} < min_rows {settings.min_rows}"
        return Curated(numbers, stop_reason=reason)
    if len(fresh) < settings.min_eval_rows:
        reason = f"too few fresh evaluation rows: {len(fresh)} < min_eval_rows {settings.min_eval_rows}"
        return Curated(numbers, stop_reason=reason)
    datasets = DatasetStore.from_home(home)
    replay_rows, replay_ref = _replay(datasets, config, len(train))
    numbers |= {"replay_rows": len(replay_rows), "replay_dataset": replay_ref}
    params = {"loop": config.loop_name, "deployment": config.deployment,
              "since": since.isoformat() if since else None, "until": until.isoformat()}  # fmt: skip
    fresh_info = _commit(datasets, f"{config.dataset_name}-fresh", fresh, params, numbers, [])
    train_info = _commit(
        datasets,
        f"{config.dataset_name}-train",
        train + replay_rows,
        params,
        numbers,
        [replay_ref] if replay_ref else [],
    )
    ids = tuple(r["request_id"] for r in rows)
    return Curated(numbers, train_info, fresh_info, request_ids=ids)


def _commit(
    datasets: DatasetStore,
    name: str,
    rows: list[Row],
    params: dict[str, Any],
    numbers: dict[str, Any],
    parents: list[str],
) -> DatasetVersionInfo:
    stats = length_stats(rows, SchemaKind.PROMPT_COMPLETION)
    record = {"name": "loop.curate", "params": params, "report": numbers}
    return datasets.commit(
        name,
        rows,
        SchemaKind.PROMPT_COMPLETION.value,
        transform=record,
        parents=parents,
        source="request_log",
        stats=stats,
        num_tokens=stats["tokens"],
    )
