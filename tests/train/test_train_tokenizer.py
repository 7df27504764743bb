"""Tokenizer training: Hugging Face format, special tokens, chat template."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from llmops.errors import InvalidInput
from llmops.train.tokenizer import BOS, EOS, PAD, ROLE_MARKERS, load_tokenizer, train_tokenizer


def test_trained_tokenizer_loads_with_auto_tokenizer(tokenizer_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == (PAD, BOS, EOS)
    assert 300 <= len(tokenizer) <= 320
    for marker in ROLE_MARKERS:
        assert marker in tokenizer.all_special_tokens
        assert len(tokenizer(marker, add_special_tokens=False)["input_ids"]) == 1  # never split
    text = "the red cat sat on the big mat"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert len(ids) < len(text)  # merges were learned
    # The defaults encode as training does: bos first, once (a template renders its own bos).
    assert tokenizer(text)["input_ids"] == [tokenizer.bos_token_id, *ids]
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=True, return_dict=False
    )
    assert list(chat).count(tokenizer.bos_token_id) == 1


def test_byte_level_covers_unseen_text(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    text = "Zürich ∑ 東京 🙂"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_chat_template_renders_roles_and_ends_turns_with_eos(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == f"{BOS}<|system|>\nbe brief{EOS}<|user|>\nhi{EOS}<|assistant|>\nhello{EOS}"
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|assistant|>\n")
    assert text.startswith(prompt)  # prefix-stable: batching relies on it


def test_unknown_chat_role_is_rejected(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    with pytest.raises(Exception, match="unknown chat role"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_vocab_size_must_leave_room_for_merges(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        train_tokenizer(["abc"], tmp_path, vocab_size=200)
    assert caught.value.param == "tokenizer.vocab_size"


def test_loading_a_folder_without_tokenizer_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        load_tokenizer(tmp_path)
