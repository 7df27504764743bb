"""Tokenizers: train a byte-level BPE, save it in Hugging Face format, load one from a local folder.

A trained tokenizer carries bos/eos/pad and the chat role markers as special tokens and a Jinja chat
template, so ``AutoTokenizer.from_pretrained(dir, local_files_only=True)`` loads it and
``apply_chat_template`` renders conversations. An assistant turn ends with the eos token, so any
engine that stops at eos stops at the end of a reply.

Its post-processor starts an encoded text with bos, as training starts every example, so a tool
that encodes with the tokenizer's defaults (``tokenizer(text)``, a vLLM replica's completions)
feeds the model what it was trained on. llmops itself encodes through ``input_format``, with
``add_special_tokens=False`` and an explicit bos, and does not depend on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from llmops.errors import InvalidInput

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
ROLE_MARKERS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, *ROLE_MARKERS)  # ids 0..5, in this order

# Each message renders as `<|role|>\n{content}<|eos|>`; a prompt for a reply ends with `<|assistant|>\n`.
# Rendering is prefix-stable (a conversation's text starts with the text of any of its prefixes), which
# batching relies on to find the assistant tokens.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{ raise_exception('unknown chat role: ' + message['role']) }}"
    "{%- endif -%}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
)

# 256 byte symbols plus the special tokens are the floor of a byte-level vocabulary.
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)


def train_tokenizer(
    texts: Iterable[str],
    output_dir: str | Path,
    *,
    vocab_size: int = 512,
    min_frequency: int = 2,
    model_max_length: int = 2048,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts``, save it to ``output_dir`` and return it.

    The vocabulary may come out smaller than ``vocab_size`` when the texts have too few merges.
    """
    if vocab_size <= MIN_VOCAB_SIZE:
        raise InvalidInput(
            f"tokenizer.vocab_size must exceed {MIN_VOCAB_SIZE} (256 bytes + special tokens), "
            f"got {vocab_size}",
            param="tokenizer.vocab_size",
        )
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A",
                pair=f"{BOS} $A {BOS} $B",
                special_tokens=[(BOS, SPECIAL_TOKENS.index(BOS))],
            ),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=list(ROLE_MARKERS),
        chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length,
    )
    tokenizer.save_pretrained(str(output_dir))
    return tokenizer


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a local folder (never a hub); give it a pad token if it has none."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"no loadable tokenizer in {Path(path).name}: {exc}", param="tokenizer") from None
    if tokenizer.pad_token_id is None:
        # Padding positions are masked out of attention and loss, so any id works; eos is conventional.
        if tokenizer.eos_token_id is None:
            raise InvalidInput("the tokenizer has neither a pad nor an eos token", param="tokenizer")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
