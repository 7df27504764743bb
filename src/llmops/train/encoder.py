"""Encoder (BERT-style) models: special tokens, configs, tokenisation, loading and mean pooling.

An encoder reads a whole text at once (bidirectional attention) and is trained for one of two tasks:

- ``classification``: ``BertForSequenceClassification``; the label names are the distinct
  completions of the training rows (sorted), recorded in ``config.json`` as ``id2label``.
- ``embedding``: ``BertForMaskedLM`` trained by masked-language modelling; served as the mean of
  the last hidden states over the text's tokens.

Every text is encoded the same way in training, evaluation and serving: ``[CLS] text [SEP]``, at
most ``max_position_embeddings`` tokens. Our byte-level tokenizers have no ``[CLS]``/``[SEP]``/
``[MASK]``; ``add_encoder_tokens`` adds them as special tokens (``<|cls|>``, ``<|sep|>``,
``<|mask|>``) and makes the tokenizer's own post-processor write the same frame, so a tool that
calls ``tokenizer(text)`` sees what the model was trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import processors
from transformers import (
    AutoConfig,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from llmops.errors import InvalidInput
from llmops.registry.safety import ENCODER_MODEL_TYPES
from llmops.train.recipe import EncoderTask, NewModelSpec

CLS, SEP, MASK = "<|cls|>", "<|sep|>", "<|mask|>"
_TASK_OF_ARCHITECTURE = {
    "BertForSequenceClassification": "classification",
    "BertForMaskedLM": "embedding",
    "BertModel": "embedding",
}


@dataclass(frozen=True)
class EncoderInfo:
    """What an encoder directory holds: its family, task and labels (classification only)."""

    architecture: str
    task: EncoderTask
    labels: tuple[str, ...]
    max_length: int


def is_encoder_config(config: dict[str, Any]) -> bool:
    """Whether a ``config.json`` (as a dict) describes an encoder llmops serves."""
    return config.get("model_type") in ENCODER_MODEL_TYPES


def describe(model_dir: str | Path) -> EncoderInfo:
    """Family, task and labels of the encoder saved in ``model_dir`` (read from ``config.json``)."""
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInput(
            f"no readable config.json in {Path(model_dir).name}: {exc}", param="model"
        ) from None
    if not is_encoder_config(config):
        raise InvalidInput(
            f"{Path(model_dir).name} is a {config.get('model_type')!r} model, not an encoder", param="model"
        )
    names = config.get("architectures") or []
    task = next((_TASK_OF_ARCHITECTURE[n] for n in names if n in _TASK_OF_ARCHITECTURE), "embedding")
    id2label = config.get("id2label") or {}
    labels = tuple(str(id2label[k]) for k in sorted(id2label, key=int)) if task == "classification" else ()
    return EncoderInfo(
        architecture=str(config["model_type"]),
        task=task,  # type: ignore[arg-type]
        labels=labels,
        max_length=int(config.get("max_position_embeddings", 512)),
    )


def add_encoder_tokens(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Give ``tokenizer`` cls/sep/mask special tokens where it lacks them, and frame single texts as
    ``cls text sep``. Returns the same tokenizer (its vocabulary may have grown)."""
    missing = {
        name: token
        for name, token in (("cls_token", CLS), ("sep_token", SEP), ("mask_token", MASK))
        if getattr(tokenizer, name) is None
    }
    if missing:
        tokenizer.add_special_tokens(missing)  # type: ignore[arg-type]
    if isinstance(tokenizer, PreTrainedTokenizerFast):
        cls, sep = str(tokenizer.cls_token), str(tokenizer.sep_token)
        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}",
            pair=f"{cls} $A {sep} $B {sep}",
            special_tokens=[(cls, int(tokenizer.cls_token_id)), (sep, int(tokenizer.sep_token_id))],
        )
    return tokenizer


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str, max_length: int) -> list[int]:
    """``[CLS] text [SEP]``, the text cut to fit ``max_length`` tokens."""
    return encode_texts(tokenizer, [text], max_length)[0]


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int) -> list[list[int]]:
    """``encode_text`` of each text, tokenised in one call (a fast tokenizer runs the batch at once)."""
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise InvalidInput("the tokenizer has no cls/sep tokens: it is not an encoder's", param="tokenizer")
    cls, sep, room = int(tokenizer.cls_token_id), int(tokenizer.sep_token_id), max(0, max_length - 2)
    batch = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return [[cls, *ids[:room], sep] for ids in batch]


def encoder_config(
    spec: NewModelSpec, tokenizer: PreTrainedTokenizerBase, task: EncoderTask, labels: list[str]
) -> BertConfig:
    """The config of a new encoder; vocabulary and pad id from the tokenizer, labels for classification."""
    settings: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        max_position_embeddings=spec.max_position_embeddings,
        attention_probs_dropout_prob=spec.dropout,
        hidden_dropout_prob=spec.dropout,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=spec.tie_embeddings,
    )
    if task == "classification":
        settings.update(
            id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)}
        )
    return BertConfig(**settings)


def build_encoder(config: BertConfig, task: EncoderTask, *, seed: int) -> PreTrainedModel:
    """A freshly initialised encoder for ``task``; the same config and seed give the same weights."""
    model_cls = BertForSequenceClassification if task == "classification" else BertForMaskedLM
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    return model.float()


def load_encoder(
    path: str | Path, task: EncoderTask, labels: list[str] | None = None, *, param: str = "model.base"
) -> PreTrainedModel:
    """Load an encoder for ``task`` from a local directory; a classifier gets ``labels`` (a new head
    when they differ from the saved ones)."""
    path = Path(path)
    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    if config.model_type not in ENCODER_MODEL_TYPES:
        raise InvalidInput(
            f"{path.name} is a {config.model_type!r} model; an encoder recipe tunes a bert encoder",
            param=param,
        )
    try:
        if task == "classification":
            assert labels is not None
            saved = [config.id2label[i] for i in sorted(config.id2label)] if config.id2label else []
            return BertForSequenceClassification.from_pretrained(
                str(path),
                local_files_only=True,
                dtype=torch.float32,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)},
                ignore_mismatched_sizes=saved != labels,
            )
        return BertForMaskedLM.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"no loadable encoder in {path.name}: {exc}", param=param) from None


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of ``hidden`` ``[B, T, H]`` over the positions ``attention_mask`` ``[B, T]`` keeps."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
