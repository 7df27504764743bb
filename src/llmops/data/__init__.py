"""Datasets: ingest, row schemas, cleaning, dedup, the PII scrub step, splitting, versioning and
synthetic tasks.

Modules, one concern each: ``schemas`` (text | prompt_completion | chat rows), ``readers`` (JSONL,
CSV, Parquet in and out), ``cleaning`` (normalise, length filter, exact and near dedup, PII scrub),
``split`` (deterministic train/validation/test), ``versions`` and ``store`` (dataset versions),
``synth`` (generated tasks with exactly checkable answers, over named domains).

Imports only ``llmops.errors``, ``llmops.settings``, ``llmops.store`` and sibling domain packages
such as ``llmops.tracking``; never serving or orchestration packages (``engine``, ``serve``,
``gateway``, ``deploy``, ``pipelines``, ``loop``, ``cli``, ``dashboard``). PII detectors come from
``security`` through the ``cleaning.PIIDetector`` protocol, passed in by the caller.
"""
