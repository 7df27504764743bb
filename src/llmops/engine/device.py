"""Where the engine runs: ``EngineConfig.device`` and ``dtype`` resolved against this machine.

``auto`` picks the first CUDA device when torch sees one, else the CPU; ``dtype: auto`` is bfloat16
on CUDA (float16 on a GPU without bfloat16) and float32 on the CPU. The config only checks the
spelling, so a deployment spec for a GPU cluster still renders on a laptop; asking this machine for
a device it lacks is refused here, before any weights load, with the field and what is available.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from llmops.errors import InvalidInput

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Placement:
    """The device and dtype of the model, its KV cache, sampler tensors, draft and adapters."""

    device: torch.device
    dtype: torch.dtype

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def describe(self) -> str:
        """``cuda:0 bfloat16``: for logs and the replica's start line."""
        return f"{self.device} {str(self.dtype).removeprefix('torch.')}"


def available_devices() -> list[str]:
    """``cpu`` and every CUDA device torch can use here."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu", *(f"cuda:{i}" for i in range(count))]


def resolve_device(device: str) -> torch.device:
    """``auto|cpu|cuda|cuda:N`` → a device of this machine; InvalidInput (param ``device``) if absent."""
    if device == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if device == "cpu":
        return torch.device("cpu")
    index = int(device.partition(":")[2] or 0)
    available = available_devices()
    if f"cuda:{index}" not in available:
        why = (
            f"this machine has {len(available) - 1} CUDA device(s)"
            if torch.cuda.is_available()
            else f"torch {torch.__version__} finds no CUDA device here"
        )
        raise InvalidInput(
            f"device: {device!r} is not available ({why}); available: {', '.join(available)}. "
            "Use device auto or cpu, or run on a machine with that GPU and a CUDA build of torch",
            param="device",
        )
    return torch.device("cuda", index)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` → bfloat16 on CUDA (float16 where the GPU lacks bfloat16), float32 on the CPU."""
    if dtype != "auto":
        return DTYPES[dtype]
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def resolve_placement(device: str, dtype: str) -> Placement:
    resolved = resolve_device(device)
    return Placement(resolved, resolve_dtype(dtype, resolved))


def place_module(
    module: ModuleT, placement: Placement, *, parameters: Callable[[str], bool] = lambda name: True
) -> ModuleT:
    """``module`` on ``placement.device``, its chosen floating-point ``parameters`` in its dtype.

    Buffers keep their dtype, as ``from_pretrained(dtype=...)`` leaves them: RoPE's inverse
    frequencies stay float32, so a model cast here computes exactly what one loaded in the dtype does.
    """
    if any(p.device != placement.device for p in module.parameters()):
        module = module.to(placement.device)
    for name, param in module.named_parameters():
        if param.is_floating_point() and param.dtype != placement.dtype and parameters(name):
            param.data = param.data.to(placement.dtype)
    return module
