"""Small things tests build: tiny models from configs (no hub, seconds to make)."""

from __future__ import annotations

from pathlib import Path


def make_tiny_model(path: Path, seed: int = 0, vocab_size: int = 128) -> Path:
    """A 2-layer Llama with random weights, saved as safetensors (no hub, no tokenizer needed)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    LlamaForCausalLM(config).save_pretrained(path, safe_serialization=True)
    return path
