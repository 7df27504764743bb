"""Multi-LoRA: several peft LoRA adapters on one base model, chosen per token in a mixed batch.

peft injects the LoRA layers into the base model's modules in place, so the runner keeps calling
the same decoder. For a batch that uses adapters, peft's mixed-batch path (``adapter_names``, one
name per batch row; ``"__base__"`` = no adapter) adds each row's own low-rank update; a batch
without adapter rows runs with the adapters disabled. Each load gets a fresh prefix-cache
namespace, because K/V computed under one adapter (or an older version of it) must never serve
another. Adapter weights live on the engine's device in its dtype, like the base model's.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

from llmops.engine.device import Placement, place_module
from llmops.errors import Conflict, InvalidInput, NotFound

BASE_ADAPTER = "__base__"


class AdapterSet:
    """The LoRA adapters loaded on one base model."""

    def __init__(self, model: PreTrainedModel, placement: Placement | None = None) -> None:
        self.base_model = model
        self.placement = placement or Placement(model.device, model.dtype)
        self._peft: Any = None  # peft.PeftModel once the first adapter is loaded
        self._namespaces: dict[str, int] = {}
        self._next_namespace = itertools.count(1)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._namespaces))

    def __contains__(self, name: object) -> bool:
        return name in self._namespaces

    def namespace(self, name: str | None) -> int:
        """Prefix-cache namespace of ``name`` (0 for the base model)."""
        return 0 if name is None else self._namespaces[name]

    def load(self, name: str, path: Path) -> None:
        """Load a peft LoRA adapter directory under ``name``."""
        from peft import PeftModel

        if name == BASE_ADAPTER or not name:
            raise InvalidInput(f"adapter name {name!r} is reserved", param="adapter")
        if name in self._namespaces:
            raise Conflict(f"adapter {name!r} is already loaded; unload it first", param="adapter")
        if not (Path(path) / "adapter_config.json").is_file():
            raise InvalidInput(f"no peft adapter (adapter_config.json) in {Path(path).name!r}", param="path")
        self._check_base_takes_lora()
        # Loaded as saved and onto the base model's device, then cast to its dtype (peft would upcast).
        device = str(self.placement.device)
        options: dict[str, Any] = {"torch_device": device, "autocast_adapter_dtype": False}
        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self.base_model, str(path), adapter_name=name, **options)
        else:
            self._peft.load_adapter(str(path), adapter_name=name, **options)
        place_module(self._peft, self.placement, parameters=lambda param: f".{name}." in param)
        self._peft.eval()
        self._namespaces[name] = next(self._next_namespace)

    def _check_base_takes_lora(self) -> None:
        quantized = getattr(self.base_model.config, "quantization_config", None)
        if quantized is not None:
            method = getattr(quantized, "method", None) or getattr(quantized, "quant_method", "?")
            raise InvalidInput(
                f"LoRA adapters cannot be served on a quantised base ({method}): peft's LoRA layers wrap "
                "floating-point linear layers only. Serve the adapter on the unquantised source version, "
                "or merge the adapter into it and quantise the merged model",
                param="adapter",
            )

    def unload(self, name: str) -> None:
        """Remove adapter ``name``; the base model is restored when the last one goes."""
        if name not in self._namespaces:
            raise NotFound(f"adapter {name!r} is not loaded", param="adapter")
        del self._namespaces[name]
        if self._namespaces:
            self._peft.delete_adapter(name)
        else:
            # Strip the LoRA layers entirely so base-only batches pay nothing for them.
            self.base_model = self._peft.unload()
            self._peft = None

    def activate(self, row_adapters: list[str] | None) -> Any:
        """Context in which LoRA layers apply ``row_adapters[i]`` to batch row ``i``.

        ``None`` (no row uses an adapter) disables every adapter for the forward pass.
        """
        if self._peft is None:
            return nullcontext()
        if row_adapters is None:
            return self._peft.disable_adapter()
        return self._mixed(row_adapters)

    @contextmanager
    def _mixed(self, row_adapters: list[str]) -> Iterator[None]:
        # peft's own hook that feeds adapter_names to every LoRA layer (what PeftModel.forward uses).
        with self._peft.base_model._enable_peft_forward_hooks(adapter_names=row_adapters):
            yield
