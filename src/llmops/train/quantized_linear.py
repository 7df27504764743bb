"""Quantised replacements for ``nn.Linear``, over torch's own low-precision CPU kernels.

Three schemes, each one module holding the stored tensors under fixed names (what the safetensors
file holds) and a ``forward`` that calls one torch kernel:

- ``int8-dynamic``: per-output-channel symmetric int8 weights (``weight`` int8 ``[out, in]``,
  ``weight_scale`` fp32 ``[out]``); each forward quantises its activations per token (symmetric
  int8) and multiplies int8 by int8 with ``torch._int_mm`` (int32 accumulation), then rescales.
- ``int8-weight-only``: the same weights; activations stay in floating point and
  ``aten._weight_int8pack_mm`` dequantises the weights inside the matmul (bf16 compute on CPU).
- ``int4-weight-only``: group-wise asymmetric 4-bit weights (``weight_int4`` uint8 ``[out, in/2]``,
  two values a byte, low nibble first; ``weight_scale``/``weight_zero`` bf16 ``[out, in/group]``)
  for ``aten._weight_int4pack_mm_for_cpu`` (bf16 compute); ``prepare()`` converts the portable
  nibbles into the kernel's tiled layout once after loading. A weight is ``q * scale + zero``
  with ``q`` in 0..15.

Biases stay in floating point. The modules are inference-only: nothing here has a gradient.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

QuantMethod = Literal["int8-dynamic", "int8-weight-only", "int4-weight-only"]
METHODS: tuple[QuantMethod, ...] = ("int8-dynamic", "int8-weight-only", "int4-weight-only")
INT4_GROUP_SIZES = (32, 64, 128, 256)  # what the CPU int4 kernel accepts
_INT8_MAX = 127.0
_EPS = 1e-8


def _frozen(tensor: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(tensor, requires_grad=False)


class QuantizedLinear(nn.Module):
    """Base of the quantised linear layers: shape, bias and the shared flattening of inputs."""

    method: QuantMethod

    def __init__(self, in_features: int, out_features: int, bias: bool) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.bias = _frozen(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)  # [tokens, in]
        out = self._matmul(flat).to(x.dtype)  # [tokens, out]
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def prepare(self) -> None:
        """Turn the stored tensors into the kernel's layout (after the weights are loaded)."""

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, method={self.method}"


class Int8Linear(QuantizedLinear):
    """int8 weights with a per-output-channel scale; dynamic (int8 GEMM) or weight-only compute."""

    def __init__(self, in_features: int, out_features: int, bias: bool, method: QuantMethod) -> None:
        super().__init__(in_features, out_features, bias)
        self.method = method
        self.weight = _frozen(torch.zeros(out_features, in_features, dtype=torch.int8))
        self.weight_scale = _frozen(torch.ones(out_features))

    @classmethod
    def from_float(cls, linear: nn.Linear, method: QuantMethod) -> Int8Linear:
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=_EPS) / _INT8_MAX  # [out]
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, method)
        module.weight.data = torch.round(weight / scale[:, None]).clamp(-_INT8_MAX, _INT8_MAX).to(torch.int8)
        module.weight_scale.data = scale
        if linear.bias is not None and module.bias is not None:
            module.bias.data = linear.bias.detach().float().clone()
        return module

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "int8-dynamic":
            return self._dynamic(x)
        scale = self.weight_scale.to(torch.bfloat16)
        return torch.ops.aten._weight_int8pack_mm(x.to(torch.bfloat16), self.weight, scale)

    def _dynamic(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        amax = x.abs().amax(dim=1, keepdim=True).clamp_(min=_EPS)  # [tokens, 1]
        # |x| <= amax, so the scaled values already lie in [-127, 127]: no clamp needed.
        xq = (x * (_INT8_MAX / amax)).round_().to(torch.int8)
        # weight.t() is a column-major view: the layout the CPU int8 GEMM reads fastest.
        acc = torch._int_mm(xq, self.weight.t())  # [tokens, out] int32
        return acc * ((amax / _INT8_MAX) * self.weight_scale)  # int32 * fp32 -> fp32


class Int4Linear(QuantizedLinear):
    """Group-wise 4-bit weights for the CPU tinygemm kernel."""

    method: QuantMethod = "int4-weight-only"

    def __init__(self, in_features: int, out_features: int, bias: bool, group_size: int) -> None:
        super().__init__(in_features, out_features, bias)
        self.group_size = group_size
        groups = in_features // group_size
        self.weight_int4 = _frozen(torch.zeros(out_features, in_features // 2, dtype=torch.uint8))
        self.weight_scale = _frozen(torch.ones(out_features, groups, dtype=torch.bfloat16))
        self.weight_zero = _frozen(torch.zeros(out_features, groups, dtype=torch.bfloat16))
        # The kernel's layout, built by prepare(); not saved (the portable tensors are).
        self.register_buffer("packed", None, persistent=False)
        self.register_buffer("scales_and_zeros", None, persistent=False)

    @classmethod
    def from_float(cls, linear: nn.Linear, group_size: int) -> Int4Linear:
        out_features, in_features = linear.weight.shape
        grouped = linear.weight.detach().float().reshape(out_features, -1, group_size)
        low, high = grouped.amin(dim=-1), grouped.amax(dim=-1)  # [out, groups]
        scale = ((high - low) / 15.0).clamp(min=_EPS)
        q = torch.round((grouped - low[..., None]) / scale[..., None]).clamp(0, 15).to(torch.uint8)
        q = q.reshape(out_features, in_features)
        module = cls(in_features, out_features, linear.bias is not None, group_size)
        module.weight_int4.data = q[:, 0::2] | (q[:, 1::2] << 4)
        module.weight_scale.data = scale.to(torch.bfloat16)
        module.weight_zero.data = low.to(torch.bfloat16)
        if linear.bias is not None and module.bias is not None:
            module.bias.data = linear.bias.detach().float().clone()
        return module

    def unpacked(self) -> torch.Tensor:
        """The 4-bit values ``q`` as int32 ``[out, in]``."""
        low = self.weight_int4 & 0x0F
        high = self.weight_int4 >> 4
        return torch.stack([low, high], dim=-1).reshape(self.out_features, self.in_features).to(torch.int32)

    @property
    def prepared(self) -> bool:
        return self.packed is not None

    def prepare(self) -> None:
        """Build the kernel's layout and release the portable tensors (so the weights are held
        once); a prepared module computes but can no longer be saved."""
        if self.prepared:
            return
        self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(self.unpacked(), 1)
        # The kernel computes (q - 8) * scale + zero: shift our q * scale + low by 8 steps.
        zero = self.weight_zero.float() + 8.0 * self.weight_scale.float()
        stacked = torch.stack([self.weight_scale.float().t(), zero.t()], dim=-1)  # [groups, out, 2]
        self.scales_and_zeros = stacked.contiguous().to(torch.bfloat16)
        for name in ("weight_int4", "weight_scale", "weight_zero"):
            tensor = getattr(self, name)
            tensor.data = torch.empty(0, dtype=tensor.dtype)

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        self.prepare()
        return torch.ops.aten._weight_int4pack_mm_for_cpu(
            x.to(torch.bfloat16), self.packed, self.group_size, self.scales_and_zeros
        )


def quantized_module(
    in_features: int, out_features: int, bias: bool, method: QuantMethod, group_size: int
) -> QuantizedLinear:
    """An empty module of ``method`` (weights to be loaded into it)."""
    if method == "int4-weight-only":
        return Int4Linear(in_features, out_features, bias, group_size)
    return Int8Linear(in_features, out_features, bias, method)


def quantize_linear(linear: nn.Linear, method: QuantMethod, group_size: int) -> QuantizedLinear:
    """The quantised twin of ``linear``."""
    if method == "int4-weight-only":
        return Int4Linear.from_float(linear, group_size)
    return Int8Linear.from_float(linear, method)
