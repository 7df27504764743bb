"""Quantise a registered model version into a new version with lineage to its source.

Everything is checked before any work: the source must be a full causal LM (``hf-causal-lm``) of a
supported architecture that is not quantised already, and the method and group size must be ones
the CPU kernels take. The result is registered under ``name`` (default ``<source>-<method>``) with
``base`` = the source version (so ``models lineage`` shows where it came from) and a
``quantization`` tag: method, group size, quantised layers, and weight memory and size on disk
against the source. Nothing is registered when any step fails.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.errors import InvalidInput
from llmops.registry import ModelVersionInfo, Registry
from llmops.registry.safety import inspect_model_dir
from llmops.train.modeling import load_model
from llmops.train.quantization import (
    DEFAULT_GROUP_SIZE,
    check_quantizable,
    disk_bytes,
    load_quantized,
    quantize_model,
    save_quantized,
    weight_bytes,
)

QUANTIZATION_TAG = "quantization"


@dataclass(frozen=True)
class QuantizedVersion:
    """A registered quantised version and what it weighs against its source."""

    version: ModelVersionInfo
    source: ModelVersionInfo
    method: str
    group_size: int
    layers: int
    weight_bytes: int
    source_weight_bytes: int
    disk_bytes: int
    source_disk_bytes: int

    @property
    def weight_ratio(self) -> float:
        return self.weight_bytes / self.source_weight_bytes

    @property
    def disk_ratio(self) -> float:
        return self.disk_bytes / self.source_disk_bytes


def check_source(source: ModelVersionInfo, config: dict[str, Any], method: str, group_size: int) -> None:
    """Refuse a source that cannot be quantised, naming why."""
    if source.format == "peft-adapter":
        raise InvalidInput(
            f"{source.ref} is a PEFT adapter: merge it into its base ({source.base}) and register the "
            "merged model, then quantise that",
            param="model",
        )
    if source.format != "hf-causal-lm":
        raise InvalidInput(
            f"{source.ref} is a {source.format}; only causal LMs (hf-causal-lm) are quantised", param="model"
        )
    check_quantizable(config, method, group_size)


def quantize_version(
    registry: Registry,
    ref: str,
    method: str,
    *,
    name: str | None = None,
    group_size: int = DEFAULT_GROUP_SIZE,
    reason: str | None = None,
    extra_tags: dict[str, Any] | None = None,
) -> QuantizedVersion:
    """Quantise version ``ref`` with ``method`` and register the result (see the module doc)."""
    source = registry.get(ref)
    source_dir = registry.local_path(source.ref)
    config = inspect_model_dir(source_dir, remote_code_allow=registry.remote_code_allow).config
    check_source(source, config, method, group_size)
    model = load_model(source_dir, param="model")
    source_weights = weight_bytes(model)
    quant_config = quantize_model(model, method, group_size)
    with tempfile.TemporaryDirectory(prefix="llmops-quantize-") as tmp:
        out = save_quantized(model, quant_config, source_dir, Path(tmp) / "model")
        del model
        loaded = load_quantized(out)  # proves it loads, and measures what it holds once loaded
        quant_weights = weight_bytes(loaded)
        del loaded
        record = {
            "method": quant_config.method,
            "group_size": quant_config.group_size,
            "layers": len(quant_config.modules),
            "source": source.ref,
            "source_digest": source.digest,
            "weight_bytes": quant_weights,
            "source_weight_bytes": source_weights,
            "disk_bytes": disk_bytes(out),
            "source_disk_bytes": disk_bytes(source_dir),
        }
        tags: dict[str, Any] = {QUANTIZATION_TAG: record, **(extra_tags or {})}
        if "input_format" in source.tags:
            tags["input_format"] = source.tags["input_format"]
        version = registry.register(
            out,
            name or f"{source.name}-{quant_config.method}",
            description=f"{source.ref} quantised ({quant_config.method})",
            base=source.ref,
            reason=reason or f"quantise {source.ref} ({quant_config.method})",
            tags=tags,
        )
    return QuantizedVersion(
        version,
        source,
        quant_config.method,
        quant_config.group_size,
        len(quant_config.modules),
        quant_weights,
        source_weights,
        int(record["disk_bytes"]),
        int(record["source_disk_bytes"]),
    )
