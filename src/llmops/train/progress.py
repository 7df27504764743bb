"""Progress display: a rich bar (loss, tokens/s, ETA) on a terminal, nothing otherwise.

Only the main process shows it; tests and pipelines (no TTY) stay silent.
"""

from __future__ import annotations

import sys
from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn


class TrainingProgress:
    """A context manager; ``update`` after each optimiser step."""

    def __init__(self, total_steps: int, *, start_step: int = 0, enabled: bool | None = None) -> None:
        self._enabled = sys.stderr.isatty() if enabled is None else enabled
        self._total, self._start = total_steps, start_step
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> TrainingProgress:
        if self._enabled:
            self._progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[tps]} tok/s"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "train", total=self._total, completed=self._start, loss="-", tps="-"
            )
        return self

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=step, loss=f"{loss:.4f}", tps=f"{tokens_per_s:,.0f}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
