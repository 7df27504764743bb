"""Factories for the engine tests: a tiny Llama, a byte-level BPE tokenizer, request helpers.

Nothing is downloaded: the tokenizer is trained on a few sentences, the model has random weights
from a fixed seed (hidden 64, 2 layers, GQA 4/2 heads, vocab 384), saved as safetensors.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import torch

from llmops.engine.types import GenerationRequest, SamplingParams, TokenEvent

VOCAB_SIZE = 384
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CORPUS = [
    "The engine schedules requests every step and streams tokens back to the caller.",
    "Prefix caching shares key and value blocks between prompts that start the same way.",
    "Café, naïve, façade: accents make multi-byte characters; 你好世界 too.",
    "def add(a, b):\n    return a + b\n",
] * 20


def build_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        chat_template=CHAT_TEMPLATE,
    )


def build_model(vocab_size: int, seed: int = 0) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab_size,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        # Wider than the default 0.02 so random logits have clear winners (few near-ties).
        initializer_range=0.08,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def save_chat_model(directory: Path) -> Path:
    """The tiny Llama with its tokenizer saved in ``directory``: what ``llmops replica`` serves for real."""
    build_tokenizer().save_pretrained(directory)
    build_model(VOCAB_SIZE).save_pretrained(directory)
    return directory


def random_prompts(
    count: int, low: int, high: int, seed: int = 0, vocab: int = VOCAB_SIZE
) -> list[list[int]]:
    """Token-id prompts of random lengths in [low, high] (ids above the special tokens)."""
    rng = random.Random(seed)
    return [[rng.randrange(6, vocab) for _ in range(rng.randint(low, high))] for _ in range(count)]


def greedy(max_tokens: int, **extra: Any) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True, **extra)


async def collect(backend: Any, request: GenerationRequest) -> list[TokenEvent]:
    return [event async for event in backend.generate(request)]


async def collect_all(backend: Any, requests: list[GenerationRequest]) -> list[list[TokenEvent]]:
    return list(await asyncio.gather(*(collect(backend, r) for r in requests)))


def reference_greedy(model: Any, prompt: list[int], max_tokens: int) -> tuple[list[int], torch.Tensor]:
    """``generate(do_sample=False)`` with EOS disabled: (new token ids, logits ``[max_tokens, vocab]``)."""
    from transformers import GenerationConfig

    # eos_token_id=-1 never matches, so EOS is off (None would fall back to the model's EOS id).
    config = GenerationConfig(
        max_new_tokens=max_tokens, do_sample=False, eos_token_id=-1, pad_token_id=0, bos_token_id=1
    )
    ids = torch.tensor([prompt])
    # An explicit mask: otherwise generate treats every prompt token equal to pad_token_id as padding.
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        generation_config=config,
        output_logits=True,
        return_dict_in_generate=True,
    )
    return out.sequences[0, len(prompt) :].tolist(), torch.stack(out.logits)[:, 0]
