"""The contract every metric kind implements, and the example a metric scores.

A ``Metric`` scores one example at a time, ``score(prediction, reference, example)`` returning a
``MetricResult``; pass/fail metrics return 0.0 or 1.0 and declare ``binary = True``. A metric whose
run score is not the mean of its example scores (BLEU, chrF, macro F1, perplexity) declares
``corpus_level = True``, puts sufficient statistics in each result's ``stats`` and computes the run
score from a matrix of them in ``corpus_score``, which is also what the bootstrap resamples.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from llmops.errors import InvalidInput
from llmops.evals.results import MetricInfo, MetricResult

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class ChatMessage:
    """One message of a chat prompt."""

    role: str
    content: str


@dataclass(frozen=True)
class Measurements:
    """What the runner measured while generating one prediction (all optional)."""

    ttft_s: float | None = None
    tokens_per_s: float | None = None
    output_tokens: int | None = None
    # Log-probabilities of the reference's tokens under the model (teacher forcing), for perplexity.
    reference_token_logprobs: tuple[float, ...] | None = None


@dataclass(frozen=True)
class EvalExample:
    """One dataset row as metrics see it: the raw record, the prompt, and runner measurements."""

    example_id: str
    prompt: str
    record: Mapping[str, Any] = field(default_factory=dict)
    messages: tuple[ChatMessage, ...] | None = None
    measurements: Measurements = field(default_factory=Measurements)


@dataclass(frozen=True)
class MetricResources:
    """What some metrics need from outside the suite, handed in by the caller.

    ``env`` holds the environment (the caller passes ``os.environ`` or a settings-derived mapping;
    metrics never read the environment themselves). ``http_transport`` lets tests and the runner
    route judge traffic (``None`` uses a normal pooled httpx transport).
    """

    env: Mapping[str, str] = field(default_factory=dict)
    http_transport: httpx.BaseTransport | None = None


class Metric(ABC):
    """A metric kind bound to its spec. Subclasses set the class attributes and ``score``."""

    kind: ClassVar[str]
    binary: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = True
    corpus_level: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = True

    def __init__(self, metric_id: str) -> None:
        self.metric_id = metric_id

    @property
    def info(self) -> MetricInfo:
        return MetricInfo(
            metric_id=self.metric_id,
            kind=self.kind,
            binary=self.binary,
            higher_is_better=self.higher_is_better,
            corpus_level=self.corpus_level,
        )

    @abstractmethod
    def score(self, prediction: str, reference: str | None, example: EvalExample) -> MetricResult:
        """Score one example. Expected failures return ``MetricResult.failed(reason)``."""

    def corpus_score(self, stats: NDArray[np.float64]) -> float:
        """The run score from a ``(n_examples, n_stats)`` matrix of per-example ``stats``."""
        raise NotImplementedError(f"metric {self.kind!r} is aggregated by the mean")

    def close(self) -> None:  # noqa: B027 - optional hook, most metrics hold nothing
        """Release held resources (HTTP clients); the default holds none."""


def missing_reference(metric_id: str) -> MetricResult:
    """The errored result of a reference-based metric on a row without a reference."""
    return MetricResult.failed(f"metric {metric_id!r} needs a reference but the row has none")


def mean_of(values: NDArray[np.float64], what: str) -> float:
    """The mean of ``values``; an empty set is bad input, not a silent NaN."""
    if values.size == 0:
        raise InvalidInput(f"cannot aggregate {what} over an empty set of examples", param=what)
    return float(np.mean(values))
