"""Quantised models through plain transformers: they load back, stay close to their source."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.engine.engine_factories import random_prompts, reference_greedy
from transformers import AutoModelForCausalLM

from llmops.errors import InvalidInput
from llmops.train.modeling import load_model
from llmops.train.quantization import load_quantized, quantize_model, save_quantized, weight_bytes
from llmops.train.quantized_linear import METHODS, Int4Linear, Int8Linear, QuantizedLinear

# greedy tokens (of 12 per prompt, 6 prompts) that must equal the source's
AGREEMENT = {"int8-dynamic": 0.9, "int8-weight-only": 0.9, "int4-weight-only": 0.6}


def _quantized(source_dir: Path, tmp_path: Path, method: str) -> Path:
    model = AutoModelForCausalLM.from_pretrained(source_dir, local_files_only=True)
    config = quantize_model(model, method, group_size=32)
    return save_quantized(model, config, source_dir, tmp_path / method)


@pytest.mark.parametrize("method", METHODS)
def test_quantized_loads_in_transformers_and_agrees_with_source(
    method: str, source_dir: Path, tmp_path: Path
) -> None:
    out = _quantized(source_dir, tmp_path, method)
    config = (out / "config.json").read_text()
    assert '"quant_method": "llmops"' in config and f'"method": "{method}"' in config
    assert (out / "tokenizer.json").is_file(), "the tokenizer travels with the weights"

    source = AutoModelForCausalLM.from_pretrained(source_dir, local_files_only=True).eval()
    # plain transformers, with the quantizer llmops registers
    quantized = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    layers = [m for m in quantized.modules() if isinstance(m, QuantizedLinear)]
    assert len(layers) == 2 * 7, "q, k, v, o, gate, up, down of both blocks"
    assert isinstance(layers[0], Int4Linear if method.startswith("int4") else Int8Linear)
    assert not isinstance(quantized.get_output_embeddings(), QuantizedLinear)
    assert weight_bytes(quantized) < 0.75 * weight_bytes(source)  # embeddings and head stay fp32

    # next-token agreement, teacher-forced over random sequences (one disagreement does not snowball)
    ids = torch.tensor(random_prompts(8, 24, 24, seed=3))  # [8, 24]
    with torch.no_grad():
        want, got = source(ids).logits, quantized(ids).logits  # [8, 24, vocab]
    agree = (want.argmax(-1) == got.argmax(-1)).float().mean().item()
    assert agree >= AGREEMENT[method], f"{method}: {agree:.3f} of next tokens agree"
    relative = ((got - want).abs().amax(-1) / want.abs().amax(-1)).median().item()
    assert relative < (0.3 if method.startswith("int4") else 0.05), relative
    # and the generation path (KV cache) works on it
    tokens, _ = reference_greedy(quantized, ids[0, :8].tolist(), 6)
    assert len(tokens) == 6


def test_int8_weights_are_int8_with_a_scale_per_channel(source_dir: Path, tmp_path: Path) -> None:
    loaded = load_quantized(_quantized(source_dir, tmp_path, "int8-dynamic"))
    proj = loaded.model.layers[0].self_attn.q_proj
    assert isinstance(proj, Int8Linear)
    assert proj.weight.dtype == torch.int8 and proj.weight_scale.shape == (proj.out_features,)
    source = AutoModelForCausalLM.from_pretrained(source_dir, local_files_only=True)
    restored = proj.weight.float() * proj.weight_scale[:, None]
    original = source.model.layers[0].self_attn.q_proj.weight
    assert (restored - original).abs().max() <= proj.weight_scale.max() / 2 + 1e-6


def test_quantizing_twice_or_a_bad_method_or_group_is_refused(source_dir: Path, tmp_path: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(source_dir, local_files_only=True)
    with pytest.raises(InvalidInput, match="unknown quantisation method 'int3'"):
        quantize_model(model, "int3")
    with pytest.raises(InvalidInput, match="group_size 48"):
        quantize_model(model, "int4-weight-only", group_size=48)
    quantized_dir = _quantized(source_dir, tmp_path, "int8-dynamic")
    with pytest.raises(InvalidInput, match="already quantised"):
        quantize_model(load_quantized(quantized_dir), "int4-weight-only")
    # training (fine-tune base, distillation teacher) needs floating-point weights
    with pytest.raises(InvalidInput, match=r"model given as model.base is quantised \(int8-dynamic\)"):
        load_model(quantized_dir, param="model.base")
