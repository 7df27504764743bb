"""Linear weights packed for oneDNN: same results as the dense layer, used only for steps that batch
several sequences, never for tied or stale weights, and the engine's greedy tokens unchanged."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from tests.engine.engine_factories import VOCAB_SIZE, build_model, collect_all, greedy, random_prompts
from torch import nn

from llmops.engine import packed_linear
from llmops.engine.device import Placement
from llmops.engine.packed_linear import PackedLinear, packed_gemms, prepack_linear_weights
from llmops.engine.types import GenerationRequest

CPU_FLOAT32 = Placement(torch.device("cpu"), torch.float32)

pytestmark = pytest.mark.skipif(
    torch.float32 not in packed_linear.packable_dtypes(), reason="torch was built without oneDNN"
)


def linear_pair(bias: bool, dtype: torch.dtype = torch.float32) -> tuple[nn.Linear, PackedLinear]:
    torch.manual_seed(0)
    dense = nn.Linear(48, 80, bias=bias).requires_grad_(False).to(dtype)
    return dense, PackedLinear.from_linear(dense)


# float32 everywhere; 16-bit dtypes in oneDNN's own arithmetic where the CPU has it, else widened.
DTYPES = [pytest.param(d, id=str(d).removeprefix("torch.")) for d in packed_linear.packable_dtypes()]
TOLERANCES = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 48), (7, 48), (33, 1, 48)])
def test_packed_equals_dense_layer(dtype: torch.dtype, bias: bool, shape: tuple[int, ...]) -> None:
    dense, packed = linear_pair(bias, dtype)
    x = torch.randn(*shape).to(dtype)
    with torch.inference_mode():
        expected = dense(x)
        with packed_gemms(True):
            got = packed(x)
        with packed_gemms(False):
            off = packed(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=TOLERANCES[dtype], atol=TOLERANCES[dtype])
    assert torch.equal(off, expected)  # off: the dense weight, the very same kernel
    assert packed.weight is dense.weight and packed.bias is dense.bias  # parameters shared, not copied


def test_weight_changed_in_place_falls_back_to_dense() -> None:
    dense, packed = linear_pair(bias=True)
    with torch.no_grad():
        dense.weight.mul_(2.0)  # e.g. an adapter merged into the weight after packing
    x = torch.randn(5, 48)
    with torch.inference_mode(), packed_gemms(True):
        assert torch.equal(packed(x), dense(x))


def test_prepack_replaces_linear_layers_and_skips_tied_weights() -> None:
    model = build_model(VOCAB_SIZE)
    assert prepack_linear_weights(model, CPU_FLOAT32) == 2 * 7 + 1  # q k v o gate up down per layer + head
    assert isinstance(model.lm_head, PackedLinear)

    tied = build_model(VOCAB_SIZE)
    tied.lm_head.weight = tied.model.embed_tokens.weight
    assert prepack_linear_weights(tied, CPU_FLOAT32) == 2 * 7
    assert type(tied.lm_head) is nn.Linear  # the embedding needs the dense matrix it shares


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("bias", [True, False])
def test_16bit_weights_without_16bit_arithmetic_run_widened_to_float32(
    monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype, bias: bool
) -> None:
    """No AVX-512 BF16/AMX: the packed copy is float32, the answer is rounded back to the input's
    dtype, and the bias is widened with the weight; in place changes to either fall back to dense."""
    monkeypatch.setattr(packed_linear, "native_16bit_dtypes", lambda: ())
    dense, packed = linear_pair(bias, dtype)
    assert packed.compute_dtype == torch.float32 and packed.packed_weight.dtype == torch.float32
    x = torch.randn(9, 48).to(dtype)
    with torch.inference_mode(), packed_gemms(True):
        got = packed(x)
        wide = F.linear(x.float(), dense.weight.float(), None if dense.bias is None else dense.bias.float())
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), wide, rtol=TOLERANCES[dtype], atol=TOLERANCES[dtype])
    torch.testing.assert_close(got, dense(x), rtol=TOLERANCES[dtype], atol=TOLERANCES[dtype])
    target = dense.bias if bias else dense.weight
    with torch.no_grad():
        target.add_(1.0)
    with torch.inference_mode(), packed_gemms(True):
        assert torch.equal(packed(x), dense(x))


@pytest.mark.skipif(
    torch.bfloat16 not in packed_linear.native_16bit_dtypes(), reason="this CPU has no bfloat16 arithmetic"
)
def test_bfloat16_stays_bfloat16_where_the_cpu_computes_it() -> None:
    _, packed = linear_pair(True, torch.bfloat16)
    assert packed.compute_dtype == torch.bfloat16


def test_no_prepacking_where_onednn_does_not_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_model(VOCAB_SIZE)
    assert prepack_linear_weights(model, Placement(torch.device("cpu"), torch.float64)) == 0
    monkeypatch.setattr(packed_linear, "packable_dtypes", lambda: ())
    assert prepack_linear_weights(model, CPU_FLOAT32) == 0
    assert not any(isinstance(module, PackedLinear) for module in model.modules())


def test_engine_packs_only_batched_steps_and_keeps_greedy_tokens(
    make_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []
    forward = PackedLinear.forward

    def spy(self: PackedLinear, input: torch.Tensor) -> torch.Tensor:
        seen.append(packed_linear._PACKED_GEMMS.get())
        return forward(self, input)

    monkeypatch.setattr(PackedLinear, "forward", spy)
    prompts = random_prompts(6, 3, 30, seed=5)
    lengths = [4, 12, 6, 9, 3, 16]  # requests leave at different steps; the last one decodes alone

    def run(**config: Any) -> list[list[int | None]]:
        backend = make_backend(max_num_batched_tokens=64, **config)
        requests = [
            GenerationRequest(f"r{i}", greedy(n), prompt_token_ids=tuple(p))
            for i, (p, n) in enumerate(zip(prompts, lengths, strict=True))
        ]
        return [[e.token_id for e in events] for events in asyncio.run(collect_all(backend, requests))]

    dense = run(prepack_weights=False)
    assert seen == []  # nothing packed when the config says no
    packed = run()
    assert packed == dense
    assert True in seen and False in seen  # batched steps packed, the lone tail on dense weights
