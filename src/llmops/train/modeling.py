"""Causal language models: build a new one from a config with a fixed seed, load, count, save.

Models come from configs (``LlamaConfig``, ``Qwen2Config``) or from a local directory; nothing here
downloads. Saved models are safetensors only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from llmops.errors import InvalidInput
from llmops.train.recipe import NewModelSpec

_ARCHITECTURES: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
}


@dataclass(frozen=True)
class ParameterCount:
    """Parameters of a model: all of them, and those the optimiser updates."""

    total: int
    trainable: int


def model_config(spec: NewModelSpec, tokenizer: PreTrainedTokenizerBase) -> PretrainedConfig:
    """The transformers config of a new model; vocabulary and special ids come from the tokenizer."""
    config_cls, _ = _ARCHITECTURES[spec.architecture]
    settings: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_embeddings,
        attention_dropout=spec.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return config_cls(**settings)


def build_model(config: PretrainedConfig, *, seed: int) -> PreTrainedModel:
    """A freshly initialised causal LM; the same config and seed give bitwise the same weights.

    The global torch RNG is forked, so building a model does not disturb the caller's random stream.
    """
    model_cls = next((m for c, m in _ARCHITECTURES.values() if isinstance(config, c)), None)
    if model_cls is None:
        raise InvalidInput(f"unsupported model config {type(config).__name__}", param="model.architecture")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    return model.float()


def load_model(path: str | Path, *, param: str = "model.base") -> PreTrainedModel:
    """Load a causal LM in fp32 from a local directory (never a hub); a quantised model is refused
    (training, distillation and quantisation need its floating-point weights)."""
    _refuse_quantized(Path(path), param)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"no loadable model in {Path(path).name}: {exc}", param=param) from None
    return model


def _refuse_quantized(path: Path, param: str) -> None:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return  # from_pretrained says what is wrong with the directory
    scheme = config.get("quantization_config") if isinstance(config, dict) else None
    if isinstance(scheme, dict):
        method = scheme.get("method") or scheme.get("quant_method")
        raise InvalidInput(
            f"the model given as {param} is quantised ({method}); "
            "train from its floating-point source version",
            param=param,
        )


def count_parameters(model: torch.nn.Module) -> ParameterCount:
    """Count each parameter once, even when tied (embedding and output head share one tensor)."""
    params = list(model.parameters())  # parameters() already yields a shared tensor once
    return ParameterCount(
        total=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
    )


def save_model(model: PreTrainedModel, output_dir: str | Path) -> Path:
    """Save a model as ``config.json`` + ``model.safetensors`` (transformers writes only safetensors)."""
    output_dir = Path(output_dir)
    model.save_pretrained(str(output_dir))
    return output_dir
