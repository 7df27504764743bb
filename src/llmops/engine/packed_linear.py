"""Linear layers with their weights packed once for oneDNN, the CPU engine's batched GEMMs.

A decode step multiplies a few dozen rows by every weight matrix. torch's default CPU path (MKL
``sgemm``) repacks the weight into its blocked panel layout inside every call and splits small
problems poorly over threads; oneDNN's inner product on a weight reordered once into its own blocked
layout skips that work (``torch.ops.mkldnn._reorder_linear_weight`` / ``_linear_pointwise``, the
pair inductor's CPU weight prepacking uses). Measured on the benchmark model's shapes (32 rows, 2
threads): 1.6-1.8x the MKL path on the MLP and LM-head matrices (``docs/benchmarks.md``).

``PackedLinear`` keeps the dense weight too and uses it whenever packed GEMMs are off for the
step. The runner turns them on only for steps that batch several sequences (``packed_gemms``): a
lone sequence keeps MKL's kernels, whose logits are bitwise equal to transformers' ``generate``
(what evaluation runs). The price is a second copy of each packed weight (``EngineConfig.
prepack_weights`` turns packing off). Only plain ``nn.Linear`` layers of a floating dtype oneDNN
computes on this CPU are packed; weights shared with another module (tied embeddings) and
quantised layers are left alone. peft's LoRA layers wrap a packed layer like any ``nn.Linear``.

16-bit weights on a CPU without 16-bit arithmetic (no AVX-512 BF16 or AMX: oneDNN then emulates
bfloat16, and float16 has no fast path at all) are packed widened to float32: the batched GEMMs run
in float32 on the 16-bit values, which are exact in float32, and round the result back, as a
16-bit GEMM with float32 accumulation does. Measured 2.5-3x faster than the emulated bfloat16 GEMM
at 32 and 512 rows (``docs/benchmarks.md``); the packed copy is then twice the 16-bit weights.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import nn

from llmops.engine.device import Placement

logger = logging.getLogger(__name__)

# oneDNN picks the packed layout for an expected row count; 32 rows measured best across 1-512.
PACK_ROWS_HINT = 32
_PACKED_GEMMS: ContextVar[bool] = ContextVar("llmops_packed_gemms", default=False)


@contextmanager
def packed_gemms(enabled: bool) -> Iterator[None]:
    """Within this context (this thread), ``PackedLinear`` layers use their packed weights iff ``enabled``."""
    token = _PACKED_GEMMS.set(enabled)
    try:
        yield
    finally:
        _PACKED_GEMMS.reset(token)


class PackedLinear(nn.Linear):
    """``nn.Linear`` that also holds its weight in oneDNN's blocked layout for batched steps."""

    packed_weight: torch.Tensor
    compute_dtype: torch.dtype
    _widened_bias: torch.Tensor | None
    _packed_versions: tuple[int, int]

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> PackedLinear:
        """A layer sharing ``linear``'s parameters, with the packed copy made now."""
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.in_features, layer.out_features = linear.in_features, linear.out_features
        layer.weight, layer.bias = linear.weight, linear.bias
        layer.compute_dtype = compute_dtype(linear.weight.dtype) or linear.weight.dtype
        weight = linear.weight.detach().to(layer.compute_dtype)
        # Not a buffer: .to(), state_dict() and peft never see the opaque oneDNN tensor.
        layer.packed_weight = torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS_HINT)
        widened = linear.bias is not None and linear.bias.dtype != layer.compute_dtype
        layer._widened_bias = linear.bias.detach().to(layer.compute_dtype) if widened else None
        layer._packed_versions = layer._versions()
        return layer

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        # A weight changed in place since packing (a merged adapter, a reload) makes the copy stale.
        if not _PACKED_GEMMS.get() or self._versions() != self._packed_versions:
            return super().forward(input)
        if self.compute_dtype == input.dtype:
            return torch.ops.mkldnn._linear_pointwise(input, self.packed_weight, self.bias, "none", [], "")
        bias = self._widened_bias if self._widened_bias is not None else self.bias
        wide = torch.ops.mkldnn._linear_pointwise(
            input.to(self.compute_dtype), self.packed_weight, bias, "none", [], ""
        )
        return wide.to(input.dtype)

    def _versions(self) -> tuple[int, int]:
        return self.weight._version, -1 if self.bias is None else self.bias._version


def native_16bit_dtypes() -> tuple[torch.dtype, ...]:
    """16-bit dtypes this CPU multiplies natively: bfloat16 with AVX-512 BF16 or AMX."""
    cpu = torch.cpu
    bf16 = (
        getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
    )
    return (torch.bfloat16,) if bf16 and torch.ops.mkldnn._is_mkldnn_bf16_supported() else ()


def compute_dtype(dtype: torch.dtype) -> torch.dtype | None:
    """The dtype oneDNN runs a packed layer of ``dtype`` in on this CPU: the same one where the CPU
    computes it natively, float32 for a 16-bit dtype it does not; None where nothing is packed."""
    if not torch.backends.mkldnn.is_available():
        return None
    if dtype == torch.float32 or dtype in native_16bit_dtypes():
        return dtype
    if dtype in (torch.bfloat16, torch.float16):
        return torch.float32
    return None


def packable_dtypes() -> tuple[torch.dtype, ...]:
    """Weight dtypes whose linear layers are packed on this CPU (16-bit ones widened where needed)."""
    return tuple(d for d in (torch.float32, torch.bfloat16, torch.float16) if compute_dtype(d) is not None)


def prepack_linear_weights(model: nn.Module, placement: Placement) -> int:
    """Replace ``model``'s packable ``nn.Linear`` layers by ``PackedLinear`` in place; return how many."""
    if placement.device.type != "cpu" or placement.dtype not in packable_dtypes():
        logger.info("weight prepacking: not available for %s; linear layers stay dense", placement.describe())
        return 0
    shared = _shared_parameters(model)
    packed = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _packable(child, placement.dtype, shared):
                setattr(parent, name, PackedLinear.from_linear(child))  # type: ignore[arg-type]
                packed += 1
    logger.info("weight prepacking: %d linear layers packed for oneDNN (%s)", packed, placement.describe())
    return packed


def _packable(module: nn.Module, dtype: torch.dtype, shared: set[int]) -> bool:
    return (
        type(module) is nn.Linear
        and module.weight.dtype == dtype
        and module.weight.device.type == "cpu"
        and id(module.weight) not in shared
    )


def _shared_parameters(model: nn.Module) -> set[int]:
    """Ids of parameters reachable from more than one module (tied input and output embeddings)."""
    seen = Counter(id(param) for _, param in model.named_parameters(remove_duplicate=False))
    return {key for key, count in seen.items() if count > 1}
