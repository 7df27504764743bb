"""Simulated users of the demo: they ask the gateway, read the answer, and rate it.

Each user knows the reply they wanted (the synthetic row's completion): a right answer gets thumbs up,
a wrong one thumbs down with the reply they wanted as `corrected_output`, through `POST /v1/feedback`
with the answer's `x-request-id`, as a client application would. Not every user rates an answer.
What they saw is tallied, so the demo can say how often users got the right reply, from the answers
the gateway actually gave.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx


@dataclass
class Tally:
    asked: int = 0
    right: int = 0
    rated: int = 0

    def share(self) -> float:
        return self.right / self.asked if self.asked else 0.0


@dataclass
class Users:
    gateway: str
    key: str
    model: str
    seed: int = 0
    feedback_rate: float = 0.8
    phase: str = "default"  # what the tally of the next answers is called
    tallies: dict[str, Tally] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.lock = threading.Lock()
        self.client = httpx.Client(
            base_url=self.gateway, headers={"Authorization": f"Bearer {self.key}"}, timeout=60.0
        )

    def visit(self, row: dict[str, str]) -> str:
        """One user asks ``row['prompt']``, maybe rates the answer; returns the answer."""
        body = {"model": self.model, "prompt": row["prompt"], "max_tokens": 24, "temperature": 0}
        answer = self.client.post("/v1/completions", json=body)
        answer.raise_for_status()
        text = str(answer.json()["choices"][0]["text"]).strip()
        right = text == row["completion"].strip()
        with self.lock:
            rates = self.rng.random() < self.feedback_rate
            tally = self.tallies.setdefault(self.phase, Tally())
            tally.asked += 1
            tally.right += right
            tally.rated += rates
        if rates:
            rating: dict[str, str] = {"request_id": answer.headers["x-request-id"]}
            rating |= {"thumbs": "up"} if right else {"thumbs": "down", "corrected_output": row["completion"]}
            self.client.post("/v1/feedback", json=rating).raise_for_status()
        return text

    def for_a_while(self, rows: list[dict[str, str]], *, seconds: float, per_second: float) -> None:
        """Users arrive at ``per_second`` for ``seconds``, each with a row drawn from ``rows``."""
        stop_at = time.monotonic() + seconds
        self._arrive(rows, per_second, lambda: time.monotonic() >= stop_at)

    @contextlib.contextmanager
    def in_background(self, rows: list[dict[str, str]], *, per_second: float) -> Iterator[None]:
        """Users keep arriving in a thread until the block ends (production traffic does not pause)."""
        stop = threading.Event()
        thread = threading.Thread(target=self._arrive, args=(rows, per_second, stop.is_set), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=120)

    def _arrive(self, rows: list[dict[str, str]], per_second: float, done: Callable[[], bool]) -> None:
        pick = random.Random(f"{self.seed}:{self.phase}")
        next_at = time.monotonic()
        while not done():
            try:
                self.visit(pick.choice(rows))
            except httpx.HTTPError as exc:  # a user whose request failed just leaves
                print(f"  (a user's request failed: {exc})", flush=True)
            next_at += 1.0 / per_second
            time.sleep(max(0.0, next_at - time.monotonic()))
