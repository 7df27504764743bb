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
    _packed_version: int

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> PackedLinear:
        """A layer sharing ``linear``'s parameters, with the packed copy made now."""
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.in_features, layer.out_features = linear.in_features, linear.out_features
        layer.weight, layer.bias = linear.weight, linear.bias
        # Not a buffer: .to(), state_dict() and peft never see the opaque oneDNN tensor.
        layer.packed_weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), PACK_ROWS_HINT)
        layer._packed_version = linear.weight._version
        return layer

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        # A weight changed in place since packing (a merged adapter, a reload) makes the copy stale.
        if _PACKED_GEMMS.get() and self.weight._version == self._packed_version:
            return torch.ops.mkldnn._linear_pointwise(input, self.packed_weight, self.bias, "none", [], "")
        return super().forward(input)


def packable_dtypes() -> tuple[torch.dtype, ...]:
    """Dtypes oneDNN computes linear layers in on this CPU (bfloat16 needs AVX-512 BF16 or AMX)."""
    if not torch.backends.mkldnn.is_available():
        return ()
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return (torch.float32, torch.bfloat16)
    return (torch.float32,)


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
