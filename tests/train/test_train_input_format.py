"""The input format: one encoding of prompts for training, evaluation and serving, recorded per model."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.errors import InvalidInput
from llmops.train.batching import encode_rows
from llmops.train.input_format import (
    INPUT_FORMAT_FILE,
    PromptEncoder,
    format_for_schema,
    infer_input_format,
    read_input_format,
    text_token_ids,
    write_input_format,
)
from llmops.train.rows import ChatMessage, ChatRow, PromptCompletionRow
from llmops.train.tokenizer import load_tokenizer


def test_each_row_schema_records_how_conversations_are_taken(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    modes = {schema: format_for_schema(schema, tokenizer) for schema in ("text", "prompt_completion", "chat")}
    assert {s: f.chat for s, f in modes.items()} == {
        "text": "none",
        "prompt_completion": "prompt",
        "chat": "template",
    }
    assert modes["text"].routes == ("/v1/completions",)
    assert modes["chat"].routes == ("/v1/completions", "/v1/chat/completions")
    fmt = modes["prompt_completion"]
    assert fmt.add_bos and fmt.bos_token == "<|bos|>" and fmt.stop_tokens == ("<|eos|>",)
    assert "one user message" in fmt.describe()


def test_the_recorded_format_round_trips_and_a_broken_one_is_refused(
    tokenizer_dir: Path, tmp_path: Path
) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    assert read_input_format(tmp_path) is None
    fmt = format_for_schema("prompt_completion", tokenizer)
    write_input_format(fmt, tmp_path)
    assert read_input_format(tmp_path) == fmt
    (tmp_path / INPUT_FORMAT_FILE).write_text('{"chat": "sometimes"}')
    with pytest.raises(InvalidInput, match=INPUT_FORMAT_FILE):
        read_input_format(tmp_path)
    # Without a record, the trainer's convention: bos, and the tokenizer's chat template.
    (tmp_path / INPUT_FORMAT_FILE).unlink()
    inferred = PromptEncoder.for_model_dir(tmp_path, tokenizer).format
    assert inferred == infer_input_format(tokenizer) and inferred.add_bos and inferred.chat == "template"


def test_prompts_encode_exactly_as_training_encoded_them(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    encoder = PromptEncoder(tokenizer, format_for_schema("prompt_completion", tokenizer))
    row = PromptCompletionRow(prompt="colour of the red big cat:", completion=" red")
    [example], _ = encode_rows([row], tokenizer, 64)
    prompt_ids = encoder.encode_prompt(row.prompt)
    assert example.input_ids[: len(prompt_ids)] == prompt_ids
    assert prompt_ids[0] == tokenizer.bos_token_id
    assert encoder.encode_prompt("<|bos|>" + row.prompt) == prompt_ids  # never two bos tokens
    one_turn = (ChatMessage("user", row.prompt),)
    assert encoder.encode_chat(one_turn) == prompt_ids  # a completion model's chat is its raw prompt


def test_a_chat_models_prompt_is_the_template_training_rendered(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    encoder = PromptEncoder(tokenizer, format_for_schema("chat", tokenizer))
    turns = (ChatMessage("system", "be brief"), ChatMessage("user", "colour of the red big cat:"))
    row = ChatRow(messages=(*turns, ChatMessage("assistant", " red")))
    [example], _ = encode_rows([row], tokenizer, 64)
    prompt_ids = encoder.encode_chat(turns)
    assert example.input_ids[: len(prompt_ids)] == prompt_ids
    assert prompt_ids[0] == tokenizer.bos_token_id and prompt_ids.count(tokenizer.bos_token_id) == 1


def test_conversations_a_model_never_saw_are_refused_naming_the_route(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    completion = PromptEncoder(tokenizer, format_for_schema("prompt_completion", tokenizer))
    with pytest.raises(InvalidInput, match="one user message") as caught:
        completion.encode_chat((ChatMessage("system", "be brief"), ChatMessage("user", "hi")))
    assert caught.value.param == "messages" and "/v1/completions" in caught.value.message
    text = PromptEncoder(tokenizer, format_for_schema("text", tokenizer))
    with pytest.raises(InvalidInput, match="/v1/completions"):
        text.encode_chat((ChatMessage("user", "hi"),))


def test_stop_tokens_join_the_eos_ids_of_the_model_configs(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    encoder = PromptEncoder(tokenizer, format_for_schema("prompt_completion", tokenizer))

    class Config:
        eos_token_id = [7, 9]

    assert encoder.stop_token_ids() == {tokenizer.eos_token_id}
    assert encoder.stop_token_ids(Config(), None) == {tokenizer.eos_token_id, 7, 9}
    assert text_token_ids(tokenizer, "<|eos|>") == [tokenizer.eos_token_id]
