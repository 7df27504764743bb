"""Entry module of one training process under torchrun: ``python -m llmops.train.worker``.

torchrun starts N of these; each reads its rank from torchrun's environment (this entry point is
the one place that does), joins the process group and runs the same job. Rank 0 streams observer
events as JSON lines to ``--events`` and writes the ``TrainingResult`` (or the error) to
``--result``; the launcher in ``distributed.py`` reads both. A cluster scheduler can run this module
through torchrun directly with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from llmops.errors import LLMOpsError
from llmops.train.messages import TrainingFailed, TrainJob


class EventLog:
    """A ``TrainingObserver`` that appends each event as one JSON line (flushed) to a file."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle

    def _write(self, event: dict[str, Any]) -> None:
        self._handle.write(json.dumps(event) + "\n")
        self._handle.flush()

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        self._write({"event": "step", "step": step, "metrics": dict(metrics)})

    def on_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        self._write({"event": "eval", "step": step, "metrics": dict(metrics)})

    def on_checkpoint(self, step: int, path: Path) -> None:
        self._write({"event": "checkpoint", "step": step, "path": str(path)})


def error_record(exc: BaseException) -> dict[str, Any]:
    """What the launcher needs to raise the same error in the parent process."""
    if isinstance(exc, LLMOpsError):
        step = exc.step if isinstance(exc, TrainingFailed) else None
        return {"type": type(exc).__name__, "message": exc.message, "param": exc.param, "step": step}
    return {
        "type": "TrainingFailed",
        "message": f"worker crashed: {type(exc).__name__}: {exc}",
        "param": None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmops.train.worker", description=__doc__)
    parser.add_argument("--job", type=Path, required=True, help="TrainJob JSON file")
    parser.add_argument("--result", type=Path, required=True, help="where rank 0 writes the result JSON")
    parser.add_argument("--events", type=Path, required=True, help="where rank 0 appends observer events")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s pid%(process)d %(levelname)s %(name)s: %(message)s"
    )

    # Imported here so `--help` and argument errors do not pay for torch.
    import torch

    from llmops.train.collectives import DistContext, close_group, init_group, pick_device
    from llmops.train.messages import NullObserver
    from llmops.train.runner import run_job

    job = TrainJob.model_validate_json(args.job.read_text(encoding="utf-8"))
    ctx = DistContext.from_torchrun(os.environ)
    torch.set_num_threads(job.num_threads or max(1, (os.cpu_count() or 1) // ctx.world_size))
    init_group(ctx, pick_device(job.device, ctx))
    record: dict[str, Any]
    try:
        with args.events.open("a", encoding="utf-8") as events:
            observer = EventLog(events) if ctx.is_main else NullObserver()
            result = run_job(job, ctx=ctx, observer=observer)
        record, code = {"result": json.loads(result.model_dump_json())}, 0
    except Exception as exc:
        logging.exception("training failed on rank %d", ctx.rank)
        record, code = {"error": error_record(exc)}, 1
    finally:
        close_group(ctx)
    if ctx.is_main:
        args.result.write_text(json.dumps(record), encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main())
