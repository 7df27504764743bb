"""Post-training quantisation of a causal LM's linear layers, saved so transformers loads it back.

``quantize_model`` replaces the ``nn.Linear`` layers of the decoder blocks (the output head and the
embeddings stay in floating point) with the modules of ``train.quantized_linear``.
``save_quantized`` writes them as safetensors with a ``quantization_config`` in ``config.json``
(``quant_method: llmops``, the method, the group size and the exact list of quantised modules).
Loading goes through transformers' own quantizer machinery: this module registers a quantization
config and an ``HfQuantizer`` for ``llmops`` with transformers, which rebuilds those modules
before the weights are read, so ``AutoModelForCausalLM.from_pretrained(dir)`` works in any process
that has imported ``llmops.train.quantization`` (``load_quantized`` does it for you).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.quantizers import HfQuantizer
from transformers.quantizers.auto import (
    AUTO_QUANTIZATION_CONFIG_MAPPING,
    AUTO_QUANTIZER_MAPPING,
    register_quantization_config,
    register_quantizer,
)
from transformers.utils.quantization_config import QuantizationConfigMixin

from llmops.errors import InvalidInput
from llmops.train.quantized_linear import (
    INT4_GROUP_SIZES,
    METHODS,
    QuantizedLinear,
    QuantMethod,
    quantize_linear,
    quantized_module,
)

QUANT_METHOD = "llmops"  # quantization_config.quant_method of the models written here
DEFAULT_GROUP_SIZE = 32
# model_type values whose decoder blocks are quantised (the architectures llmops trains and serves)
SUPPORTED_MODEL_TYPES = frozenset({"llama", "qwen2"})
_WEIGHT_SUFFIXES = (".safetensors", ".safetensors.index.json")


class LlmopsQuantizationConfig(QuantizationConfigMixin):
    """``quantization_config`` of a model quantised by llmops."""

    def __init__(
        self,
        method: str = "int8-dynamic",
        group_size: int = DEFAULT_GROUP_SIZE,
        modules: list[str] | None = None,
        **_: Any,
    ) -> None:
        self.quant_method = QUANT_METHOD  # type: ignore[assignment]
        self.method = check_method(method)
        self.group_size = int(group_size)
        self.modules = list(modules or [])

    def to_dict(self) -> dict[str, Any]:
        return {
            "quant_method": QUANT_METHOD,
            "method": self.method,
            "group_size": self.group_size,
            "modules": self.modules,
        }


class LlmopsHfQuantizer(HfQuantizer):
    """Rebuilds the quantised modules a ``LlmopsQuantizationConfig`` names, then lets transformers
    load the stored tensors into them; int4 modules are packed for the kernel afterwards."""

    requires_calibration = True  # only pre-quantised checkpoints: quantising happens in llmops
    quantization_config: LlmopsQuantizationConfig

    def _process_model_before_weight_loading(self, model: PreTrainedModel, **kwargs: Any) -> None:
        config = self.quantization_config
        for name in config.modules:
            linear = model.get_submodule(name)
            if not isinstance(linear, nn.Linear):
                raise ValueError(f"quantization_config names {name!r}, which is not a linear layer")
            with torch.device("meta"):
                replacement = quantized_module(
                    linear.in_features,
                    linear.out_features,
                    linear.bias is not None,
                    config.method,
                    config.group_size,
                )
            _set_submodule(model, name, replacement)

    def _process_model_after_weight_loading(self, model: PreTrainedModel, **kwargs: Any) -> PreTrainedModel:
        for module in model.modules():
            if isinstance(module, QuantizedLinear):
                module.prepare()
        return model

    def is_serializable(self) -> bool:
        return False  # quantise the floating-point source again instead

    @property
    def is_trainable(self) -> bool:
        return False


def register_with_transformers() -> None:
    """Make transformers load ``quant_method: llmops`` checkpoints (idempotent)."""
    if QUANT_METHOD not in AUTO_QUANTIZATION_CONFIG_MAPPING:
        register_quantization_config(QUANT_METHOD)(LlmopsQuantizationConfig)
    if QUANT_METHOD not in AUTO_QUANTIZER_MAPPING:
        register_quantizer(QUANT_METHOD)(LlmopsHfQuantizer)


register_with_transformers()


def check_method(method: str) -> QuantMethod:
    if method not in METHODS:
        raise InvalidInput(
            f"unknown quantisation method {method!r}; choose one of {', '.join(METHODS)}", param="method"
        )
    return method


def quantization_of(config: dict[str, Any]) -> dict[str, Any] | None:
    """The ``quantization_config`` of a model's ``config.json`` (None for a floating-point model)."""
    found = config.get("quantization_config")
    return found if isinstance(found, dict) else None


def is_quantized_model(model: nn.Module) -> bool:
    return any(isinstance(module, QuantizedLinear) for module in model.modules())


def check_quantizable(config: dict[str, Any], method: str, group_size: int) -> QuantMethod:
    """Refuse (``InvalidInput`` naming the cause) what cannot be quantised here."""
    checked = check_method(method)
    existing = quantization_of(config)
    if existing is not None:
        scheme = " ".join(str(existing[k]) for k in ("quant_method", "method") if k in existing)
        raise InvalidInput(
            f"the model is already quantised ({scheme}); quantise its floating-point source instead",
            param="model",
        )
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise InvalidInput(
            f"quantising architecture {model_type!r} is not supported; supported: "
            f"{', '.join(sorted(SUPPORTED_MODEL_TYPES))}",
            param="model",
        )
    if checked == "int4-weight-only" and group_size not in INT4_GROUP_SIZES:
        raise InvalidInput(
            f"group_size {group_size} is not one the int4 kernel takes: {INT4_GROUP_SIZES}",
            param="group_size",
        )
    return checked


def linear_layers(model: PreTrainedModel) -> list[tuple[str, nn.Linear]]:
    """The linear layers of the decoder blocks (the output head is kept in floating point)."""
    head = model.get_output_embeddings()
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module is not head and ".layers." in f".{name}"
    ]


def quantize_model(
    model: PreTrainedModel, method: str, group_size: int = DEFAULT_GROUP_SIZE
) -> LlmopsQuantizationConfig:
    """Quantise ``model``'s decoder linear layers in place; return the config that describes it."""
    checked = check_quantizable(model.config.to_dict(), method, group_size)
    layers = linear_layers(model)
    if not layers:
        raise InvalidInput("the model has no linear layers in decoder blocks to quantise", param="model")
    for name, linear in layers:
        if checked == "int4-weight-only" and linear.in_features % group_size:
            raise InvalidInput(
                f"{name} has {linear.in_features} inputs, not a multiple of group_size {group_size}; "
                f"choose a group size that divides it ({INT4_GROUP_SIZES})",
                param="group_size",
            )
    for name, linear in layers:
        _set_submodule(model, name, quantize_linear(linear, checked, group_size))
    return LlmopsQuantizationConfig(checked, group_size, [name for name, _ in layers])


def save_quantized(
    model: PreTrainedModel, config: LlmopsQuantizationConfig, source_dir: Path, output_dir: Path
) -> Path:
    """Write the quantised model (safetensors + config.json with its ``quantization_config``) and the
    source directory's other files (tokenizer, generation config, input format)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for item in Path(source_dir).iterdir():
        if item.is_file() and item.name != "config.json" and not item.name.endswith(_WEIGHT_SUFFIXES):
            shutil.copy2(item, output_dir / item.name)
    model.config.quantization_config = config
    try:
        model.save_pretrained(str(output_dir))
    finally:
        del model.config.quantization_config
    return output_dir


def load_quantized(model_dir: Path, dtype: torch.dtype = torch.float32, **kwargs: Any) -> PreTrainedModel:
    """A quantised (or plain) causal LM from a local directory, as a transformers ``PreTrainedModel``."""
    register_with_transformers()
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True, dtype=dtype, **kwargs)
    return model.eval()


def weight_bytes(model: nn.Module) -> int:
    """Bytes the model's parameters and buffers hold, each storage counted once (tied weights)."""
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor is None or tensor.device.type == "meta":
            continue
        key = tensor.untyped_storage().data_ptr()
        if key in seen and tensor.numel():
            continue
        seen.add(key)
        total += tensor.numel() * tensor.element_size()
    return total


def disk_bytes(model_dir: Path) -> int:
    """Bytes of a model directory's safetensors files."""
    return sum(p.stat().st_size for p in Path(model_dir).rglob("*.safetensors"))


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
