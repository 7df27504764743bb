"""Launch a training job on N processes with torchrun and relay what rank 0 reports.

``launch(job, nproc)`` runs::

    python -m torch.distributed.run --standalone --nproc_per_node N -m llmops.train.worker \\
        --job job.json --result result.json --events events.jsonl

Each worker joins a DDP group (gloo on the CPU, NCCL on GPUs) and trains its shard of every global
batch (see ``order.py``); gradients are all-reduced, so every process holds the same weights and
only rank 0 writes. While the workers run, the launcher tails ``events.jsonl`` and replays each
event into the caller's observer in this process, so tracking works the same with one process or
many. The workers' log goes to a temporary file whose tail is quoted in the error if they fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from llmops.errors import InvalidInput, LLMOpsError
from llmops.train.messages import NullObserver, TrainingFailed, TrainingObserver, TrainingResult, TrainJob

_POLL_S = 0.2
_LOG_TAIL_CHARS = 4000


def torchrun_command(nproc: int, job_path: Path, result_path: Path, events_path: Path) -> list[str]:
    """The command line that starts ``nproc`` workers on this machine."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "llmops.train.worker",
        "--job", str(job_path), "--result", str(result_path), "--events", str(events_path),
    ]  # fmt: skip


def launch(job: TrainJob, nproc: int, observer: TrainingObserver | None = None) -> TrainingResult:
    """Run ``job`` on ``nproc`` local processes; raise the workers' error or return their result."""
    if nproc < 1:
        raise InvalidInput(f"nproc must be at least 1, got {nproc}", param="nproc")
    if job.recipe.optim.batch_size % nproc:  # the workers check too; failing here saves their start-up
        raise InvalidInput(
            f"optim.batch_size {job.recipe.optim.batch_size} must be a multiple of nproc {nproc}",
            param="optim.batch_size",
        )
    observer = observer or NullObserver()
    with tempfile.TemporaryDirectory(prefix="llmops-train-") as tmp:
        folder = Path(tmp)
        job_path, result_path, events_path = (
            folder / "job.json",
            folder / "result.json",
            folder / "events.jsonl",
        )
        log_path = folder / "workers.log"
        job_path.write_text(job.model_dump_json(by_alias=True), encoding="utf-8")
        events_path.touch()
        command = torchrun_command(nproc, job_path, result_path, events_path)
        with log_path.open("w", encoding="utf-8") as log, events_path.open(encoding="utf-8") as events:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                _relay_until_exit(process, events, observer)
            except BaseException:
                _stop(process)
                raise
        return _read_result(result_path, log_path, process.returncode)


def _relay_until_exit(process: subprocess.Popen[bytes], events: IO[str], observer: TrainingObserver) -> None:
    pending = ""
    while True:
        finished = process.poll() is not None
        pending += events.read()
        *lines, pending = pending.split("\n")  # a line without its newline is still being written
        for line in lines:
            _replay(json.loads(line), observer)
        if finished:
            return
        time.sleep(_POLL_S)


def _replay(event: dict[str, Any], observer: TrainingObserver) -> None:
    kind, step = event["event"], int(event["step"])
    if kind == "step":
        observer.on_step(step, event["metrics"])
    elif kind == "eval":
        observer.on_eval(step, event["metrics"])
    elif kind == "checkpoint":
        observer.on_checkpoint(step, Path(event["path"]))


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop torchrun and its workers (their own session, started by us) when the caller gives up."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _read_result(result_path: Path, log_path: Path, returncode: int | None) -> TrainingResult:
    if not result_path.exists():
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-_LOG_TAIL_CHARS:]
        raise TrainingFailed(f"training processes exited with code {returncode} and no result:\n{tail}")
    record = json.loads(result_path.read_text(encoding="utf-8"))
    if "error" in record:
        raise _as_error(record["error"])
    return TrainingResult.model_validate(record["result"])


def _as_error(error: dict[str, Any]) -> LLMOpsError:
    """Rebuild the worker's error as the same class where it is one of ours."""
    if error["type"] == "InvalidInput":
        return InvalidInput(error["message"], param=error.get("param"))
    return TrainingFailed(error["message"], step=error.get("step"))
