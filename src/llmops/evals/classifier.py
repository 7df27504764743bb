"""Evaluating an encoder classifier with the suites decoders are evaluated with.

A classifier "answers" a prompt with the name of its most probable label, so any suite over
prompt/completion rows scores it unchanged: ``exact_match`` is its accuracy, and the label metrics
(``accuracy``, ``f1`` with the suite's ``labels``) give macro-F1 and, in the HTML report, the
confusion matrix. Messages are joined into one text (an encoder has no chat turns).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from llmops.evals.generation import Generation, Prompt
from llmops.evals.suite import GenerationParams
from llmops.train.encoder_inference import EncoderRunner


class ClassifierGenerator:
    """The ``Generator`` of an encoder classifier: each prediction is a label name."""

    def __init__(self, model_dir: Path, *, batch_size: int = 64) -> None:
        self.runner = EncoderRunner(model_dir, batch_size=batch_size)

    def generate(
        self, prompts: Sequence[Prompt], params: GenerationParams, *, score_reference: bool = False
    ) -> list[Generation]:
        texts = [
            "\n".join(m.content for m in p.messages) if p.messages is not None else p.text for p in prompts
        ]
        started = time.perf_counter()
        predictions = self.runner.classify(texts)
        per_text = (time.perf_counter() - started) / max(1, len(texts))
        return [Generation(p.label, 1, per_text, 1.0 / per_text if per_text else 0.0) for p in predictions]
