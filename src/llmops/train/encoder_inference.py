"""Running a saved encoder: labels with probabilities, and mean-pooled embeddings, in batches.

Evaluation (``evals.classifier``) and serving (``engine.encoder_backend``) both go through
``EncoderRunner``, so a classifier is scored on exactly the input and argmax it is served with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, BertForSequenceClassification, PreTrainedModel

from llmops.errors import InvalidInput
from llmops.train.encoder import EncoderInfo, describe, encode_texts, mean_pool


@dataclass(frozen=True)
class Prediction:
    """One text's label, and the probability of every label (in the model's label order)."""

    label: str
    index: int
    scores: tuple[float, ...]
    tokens: int


class EncoderRunner:
    """An encoder loaded from a local directory (safetensors, never a hub), in eval mode, fp32."""

    def __init__(self, model_dir: str | Path, *, batch_size: int = 64) -> None:
        self.model_dir = Path(model_dir)
        self.info: EncoderInfo = describe(self.model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        model: PreTrainedModel
        if self.info.task == "classification":
            model = BertForSequenceClassification.from_pretrained(
                str(self.model_dir), local_files_only=True, dtype=torch.float32
            )
        else:
            model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True, dtype=torch.float32)
        self.model = model.eval()
        self.batch_size = batch_size
        self.pad_id = int(self.tokenizer.pad_token_id or 0)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.info.labels

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as given, [CLS] and [SEP] included (not cut to ``max_length``)."""
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]) + 2

    def _batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = encode_texts(self.tokenizer, list(texts), self.info.max_length)
        width = max(len(ids) for ids in encoded)
        ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)  # [batch, width]
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, tokens in enumerate(encoded):
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        return ids, mask

    @torch.inference_mode()
    def classify(self, texts: Sequence[str]) -> list[Prediction]:
        """The most probable label of each text (softmax over the head's logits)."""
        if self.info.task != "classification":
            raise InvalidInput(
                f"{self.model_dir.name} is an embedding encoder without a classification head: serve "
                "a classifier version for /v1/classify",
                param="model",
            )
        out: list[Prediction] = []
        for start in range(0, len(texts), self.batch_size):
            ids, mask = self._batch(texts[start : start + self.batch_size])
            probs = torch.softmax(self.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            for row in range(probs.shape[0]):
                best = int(probs[row].argmax())
                out.append(
                    Prediction(self.labels[best], best, tuple(probs[row].tolist()), int(mask[row].sum()))
                )
        return out

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Mean of the last hidden states over each text's tokens ([CLS] and [SEP] included)."""
        out: list[list[float]] = []
        base = self.model.base_model
        for start in range(0, len(texts), self.batch_size):
            ids, mask = self._batch(texts[start : start + self.batch_size])
            hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state
            out.extend(mean_pool(hidden.float(), mask).tolist())
        return out
