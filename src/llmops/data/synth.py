"""Synthetic datasets with exactly checkable answers: the public API over the tasks.

``generate(task, n, seed, domain)`` returns prompt_completion rows with metadata
(``task``, ``domain``, ``id``); the same arguments always give the same rows. ``score`` checks a
prediction against a completion the way the task defines. Tasks live in ``synth_tasks`` and
``synth_intent``; which one to use for what is described in each task's ``description``.
"""

from __future__ import annotations

import random

from llmops.data.schemas import Row
from llmops.data.synth_intent import IntentTask
from llmops.data.synth_tasks import ArithmeticTask, ExtractionTask, SynthTask
from llmops.errors import InvalidInput

TASKS: dict[str, SynthTask] = {task.name: task for task in (ArithmeticTask(), ExtractionTask(), IntentTask())}


def get_task(task: str) -> SynthTask:
    """The task called ``task``; unknown names raise ``InvalidInput`` listing the valid ones."""
    try:
        return TASKS[task]
    except KeyError:
        raise InvalidInput(
            f"unknown synthetic task {task!r}; use one of: {', '.join(sorted(TASKS))}", param="task"
        ) from None


def domains(task: str) -> list[str]:
    """The domains ``task`` can generate, ``default`` first."""
    return get_task(task).domains()


def _check_domain(spec: SynthTask, domain: str) -> None:
    if domain not in spec.domains():
        valid = ", ".join(spec.domains())
        raise InvalidInput(
            f"task {spec.name!r} has no domain {domain!r}; use one of: {valid}", param="domain"
        )


def generate(task: str, n: int, seed: int, domain: str = "default") -> list[Row]:
    """``n`` rows ``{"prompt", "completion", "task", "domain", "id"}`` drawn from ``domain``.

    Rows are independent draws, so a prompt can repeat: split by ``key="prompt"`` to keep copies
    of one prompt out of both train and test. ``id`` is unique within one call.
    """
    spec = get_task(task)
    _check_domain(spec, domain)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidInput(f"n is {n!r}; ask for a whole number of rows, 0 or more", param="n")
    # A string seed is hashed with sha512 by `random`, so the stream is stable across runs and machines.
    rng = random.Random(f"{spec.name}:{domain}:{seed}")
    rows: list[Row] = []
    for index in range(n):
        prompt, completion = spec.sample(rng, domain)
        rows.append(
            {
                "prompt": prompt,
                "completion": completion,
                "task": spec.name,
                "domain": domain,
                "id": f"{spec.name}-{domain}-{seed}-{index}",
            }
        )
    return rows


def score(task: str, prediction: str, completion: str) -> bool:
    """Whether ``prediction`` is a correct answer for the row whose completion is ``completion``."""
    return get_task(task).score(prediction, completion)
