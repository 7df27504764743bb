"""Training progress for people: step, loss, tokens/s and time left, as a ``TrainingObserver``.

The loop knows nothing of terminals; a caller that wants progress shown (the CLI) passes this
observer in. On a terminal it draws a rich progress bar; otherwise (CI logs, ``make demo``, a pipe)
it prints a plain line every ``every_steps`` steps or ``every_s`` seconds, whichever comes first,
and always for the first and the last step, so a long run never sits silent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

_LINES_PER_RUN = 20


def format_duration(seconds: float | None) -> str:
    """``H:MM:SS`` of a non-negative number of seconds; ``-:--:--`` when not known yet."""
    if seconds is None:
        return "-:--:--"
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class ProgressReport:
    """Shows the loop's events on ``console``; use as a context manager around the run."""

    def __init__(
        self,
        total_steps: int,
        console: Console,
        *,
        live: bool | None = None,
        every_steps: int | None = None,
        every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._total, self._console, self._clock = total_steps, console, clock
        self._live = console.is_terminal if live is None else live
        self._every_steps = every_steps or max(1, total_steps // _LINES_PER_RUN)
        self._every_s = every_s
        # Set by the first step this session sees (a resumed run starts past step 1).
        self._first: tuple[int, float] | None = None
        self._last_line: tuple[int, float] | None = None
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressReport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    # ---- TrainingObserver ---------------------------------------------------------------------

    def on_step(self, step: int, metrics: Mapping[str, float]) -> None:
        now = self._clock()
        if self._first is None:
            self._first = (step, now)
        loss, tokens_per_s = float(metrics.get("loss", float("nan"))), float(metrics.get("tokens_per_s", 0.0))
        if self._live:
            self._update_bar(step, loss, tokens_per_s)
        elif self._line_due(step, now):
            self._last_line = (step, now)
            self._console.print(
                f"step {step}/{self._total}  loss {loss:.4f}  {tokens_per_s:,.0f} tokens/s  "
                f"{format_duration(self.seconds_left(step, now))} left"
            )

    def on_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        best = metrics.get("best_val_loss")
        best_text = f" (best {best:.4f})" if best is not None else ""
        self._print(f"step {step}/{self._total}  validation loss {metrics['val_loss']:.4f}{best_text}")

    def on_checkpoint(self, step: int, path: Path) -> None:
        self._print(f"step {step}/{self._total}  checkpoint {path.name}")

    # ---- helpers ------------------------------------------------------------------------------

    def seconds_left(self, step: int, now: float) -> float | None:
        """Remaining steps times the mean seconds per step since this session's first step.

        None at the first step: set-up (tokenizer, model, data) would make any estimate wrong.
        """
        first_step, first_time = self._first if self._first is not None else (step, now)
        done = step - first_step
        return max(0, self._total - step) * (now - first_time) / done if done > 0 else None

    def _line_due(self, step: int, now: float) -> bool:
        if self._last_line is None or step >= self._total:
            return True
        last_step, last_time = self._last_line
        return step - last_step >= self._every_steps or now - last_time >= self._every_s

    def _print(self, text: str) -> None:
        (self._bar.console if self._bar is not None else self._console).print(text)

    def _update_bar(self, step: int, loss: float, tokens_per_s: float) -> None:
        if self._bar is None:
            self._bar = Progress(
                TextColumn("train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[tps]} tokens/s"),
                TimeRemainingColumn(),
                console=self._console,
            )
            self._bar.start()
            self._task = self._bar.add_task("train", total=self._total, completed=step - 1, loss="-", tps="-")
        assert self._task is not None
        self._bar.update(self._task, completed=step, loss=f"{loss:.4f}", tps=f"{tokens_per_s:,.0f}")
