"""End to end: a tiny Llama (random weights, made here) served by the real engine, through openai."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

pytestmark = pytest.mark.slow

SPECIALS = ["<|pad|>", "<|bos|>", "<|eos|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] + ': ' + m['content'] + eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)


def _save_tiny_model(path: Path) -> Path:
    """A byte-level tokenizer (no merges) with a chat template, and a 2-layer Llama over it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate([*SPECIALS, *sorted(alphabet)])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<|pad|>", bos_token="<|bos|>", eos_token="<|eos|>",
        chat_template=CHAT_TEMPLATE, model_max_length=256,
    )  # fmt: skip
    tokenizer.save_pretrained(str(path))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=vocab["<|bos|>"], eos_token_id=vocab["<|eos|>"], pad_token_id=vocab["<|pad|>"],
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="module")
def engine_client(tmp_path_factory: pytest.TempPathFactory, serve_app_module: Any) -> Iterator[openai.OpenAI]:
    """The app over a real ``TransformersBackend`` on one thread, with a small KV cache."""
    from llmops.engine.config import EngineConfig
    from llmops.engine.transformers_backend import TransformersBackend
    from llmops.serve import ServeConfig, build_app

    model_dir = _save_tiny_model(tmp_path_factory.mktemp("engine") / "tiny-chat")
    engine = EngineConfig(threads=1, num_kv_blocks=64, max_num_seqs=4, max_num_batched_tokens=64)
    app = build_app(TransformersBackend(model_dir, engine), "tiny-chat", ServeConfig())
    url, _ = serve_app_module(app)
    yield openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60)


def test_chat_and_streaming_with_the_real_engine(engine_client: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "hello"}]
    answer = engine_client.chat.completions.create(
        model="tiny-chat", messages=messages, max_tokens=6, temperature=0
    )
    choice = answer.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert isinstance(choice.message.content, str)
    assert answer.usage is not None
    assert 1 <= answer.usage.completion_tokens <= 6
    assert answer.usage.prompt_tokens > len("user: hello")  # bytes plus bos, eos and the prompt tail

    stream = engine_client.chat.completions.create(
        model="tiny-chat", messages=messages, max_tokens=6, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == choice.message.content  # greedy: the same text either way
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens

    unbounded = engine_client.chat.completions.create(model="tiny-chat", messages=messages)
    assert unbounded.choices[0].finish_reason in ("stop", "length")  # the default length fits the context

    two = engine_client.chat.completions.create(
        model="tiny-chat", messages=messages, max_tokens=4, n=2, seed=3
    )
    assert [c.index for c in two.choices] == [0, 1]


def test_context_overflow_from_the_real_engine_is_a_400(engine_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        engine_client.chat.completions.create(
            model="tiny-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=1000
        )
    body: Any = info.value.body
    assert body["param"] == "max_tokens"
    models = engine_client.models.list()
    assert [m.id for m in models.data] == ["tiny-chat"]
