"""Tokenisation with loss masks, packing, collation, and the deterministic data order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llmops.errors import InvalidInput
from llmops.train.batching import IGNORE_INDEX, Example, collate, encode_rows, pack_examples
from llmops.train.order import DataCursor, epoch_order, shard, take
from llmops.train.rows import ChatMessage, ChatRow, PromptCompletionRow, TextRow, read_rows
from llmops.train.tokenizer import load_tokenizer


def _targets(example: Example) -> list[int]:
    return [t for t in example.labels if t != IGNORE_INDEX]


def test_prompt_completion_masks_the_prompt_and_ends_with_eos(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    row = PromptCompletionRow(prompt="colour of the red big cat:", completion=" red")
    [example], _ = encode_rows([row], tokenizer, max_seq_len=64)
    prompt_ids = tokenizer(row.prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(row.completion, add_special_tokens=False)["input_ids"]
    assert example.input_ids == [tokenizer.bos_token_id, *prompt_ids, *completion_ids, tokenizer.eos_token_id]
    n_prompt = 1 + len(prompt_ids)
    assert example.labels[:n_prompt] == [IGNORE_INDEX] * n_prompt  # no loss on bos + prompt
    assert example.labels[n_prompt:] == [*completion_ids, tokenizer.eos_token_id]


def test_chat_loss_is_only_on_assistant_turns(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    row = ChatRow(
        messages=(
            ChatMessage("system", "be brief"),
            ChatMessage("user", "hi"),
            ChatMessage("assistant", "hello"),
            ChatMessage("user", "colour?"),
            ChatMessage("assistant", "red"),
        )
    )
    [example], _ = encode_rows([row], tokenizer, max_seq_len=64)
    eos = tokenizer.eos_token_id
    hello = tokenizer("hello", add_special_tokens=False)["input_ids"]
    red = tokenizer("red", add_special_tokens=False)["input_ids"]
    assert _targets(example) == [*hello, eos, *red, eos]
    # The whole conversation is there, as the template renders it.
    rendered = tokenizer.apply_chat_template([m.__dict__ for m in row.messages], tokenize=False)
    assert tokenizer.decode(example.input_ids) == rendered
    # The role headers and user text are masked.
    user_marker = tokenizer.convert_tokens_to_ids("<|user|>")
    for token, label in zip(example.input_ids, example.labels, strict=True):
        if token == user_marker:
            assert label == IGNORE_INDEX


def test_long_text_is_cut_into_windows(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    row = TextRow(text=" ".join(["the red cat sat on the big mat"] * 8))
    examples, stats = encode_rows([row], tokenizer, max_seq_len=16)
    assert len(examples) > 1 and stats.truncated == 1
    assert all(len(e.input_ids) <= 16 for e in examples)
    stream = [t for e in examples for t in e.input_ids]
    assert stream[0] == tokenizer.bos_token_id and stream[-1] == tokenizer.eos_token_id


def test_truncated_supervised_rows_without_targets_are_dropped(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    long_prompt = PromptCompletionRow(prompt="the red cat " * 20, completion=" red")
    short = PromptCompletionRow(prompt="cat:", completion=" red")
    examples, stats = encode_rows([long_prompt, short], tokenizer, max_seq_len=8)
    assert stats.dropped == 1 and len(examples) == 1
    with pytest.raises(InvalidInput) as caught:
        encode_rows([long_prompt], tokenizer, max_seq_len=8)
    assert caught.value.param == "max_seq_len"


def test_packing_keeps_examples_whole_and_blocks_cross_example_loss(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    rows = [
        PromptCompletionRow(prompt=f"colour of the {c} cat:", completion=f" {c}") for c in ["red", "blue"] * 4
    ]
    examples, _ = encode_rows(rows, tokenizer, max_seq_len=32)
    packed = pack_examples(examples, max_seq_len=32)
    assert len(packed) < len(examples)
    assert all(len(p.input_ids) <= 32 for p in packed)
    assert [t for p in packed for t in p.input_ids] == [t for e in examples for t in e.input_ids]
    assert sum(p.num_targets for p in packed) == sum(e.num_targets for e in examples)
    bos = tokenizer.bos_token_id
    for row in packed:
        for token, label in zip(row.input_ids, row.labels, strict=True):
            if token == bos:  # each example's first token: the previous example must not predict it
                assert label == IGNORE_INDEX


def test_collate_pads_right_and_masks_padding() -> None:
    batch = collate([Example([5, 6, 7], [-100, 6, 7]), Example([8, 9], [-100, 9])], pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7], [8, 9, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch.labels.tolist() == [[-100, 6, 7], [-100, 9, -100]]
    assert (batch.num_tokens, batch.num_targets) == (5, 3)
    assert batch.input_ids.dtype == torch.long


def test_data_order_is_a_function_of_seed_and_epoch() -> None:
    assert epoch_order(10, 0, 0).tolist() == epoch_order(10, 0, 0).tolist()
    assert epoch_order(10, 0, 0).tolist() != epoch_order(10, 0, 1).tolist()
    assert sorted(epoch_order(10, 3, 2).tolist()) == list(range(10))


def test_cursor_resume_reproduces_the_stream_across_epochs() -> None:
    straight, cursor = take(DataCursor(), 25, num_examples=7, seed=3)
    assert cursor == DataCursor(epoch=3, index=4)
    first, middle = take(DataCursor(), 9, num_examples=7, seed=3)
    rest, end = take(middle, 16, num_examples=7, seed=3)
    assert first + rest == straight and end == cursor
    assert sorted(straight[:7]) == list(range(7))  # an epoch visits every example once


def test_shards_cover_the_global_batch() -> None:
    indices = [4, 1, 7, 3]
    assert shard(indices, 0, 2) + shard(indices, 1, 2) == indices
    with pytest.raises(InvalidInput):
        shard([1, 2, 3], 0, 2)


def test_bad_rows_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"d\.jsonl line 2") as caught:
        read_rows(path, "prompt_completion")
    assert caught.value.param == "completion"
    path.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match="assistant"):
        read_rows(path, "chat")
    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        read_rows(path, "text")
