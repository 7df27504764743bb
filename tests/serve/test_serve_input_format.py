"""A replica encodes prompts as the model's recorded input format says, exactly as evaluation does.

The model directory is shaped like one the trainer writes: an llmops-trained tokenizer (bos, eos,
role markers, chat template), a tiny Llama with random weights, and ``input_format.json``. Served
answers (official ``openai`` client, real HTTP, real engine) are compared with the evaluator's
``TransformersGenerator`` on the same directory.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from llmops.evals.generation import Prompt, TransformersGenerator
from llmops.evals.suite import GenerationParams
from llmops.train.input_format import format_for_schema, text_token_ids, write_input_format
from llmops.train.tokenizer import load_tokenizer, train_tokenizer

PROMPTS = ["my card was charged twice", "how do I reset my password?", "cancel my order please"]
CORPUS = [*PROMPTS, "Your refund is on its way.", "Use the reset link we just emailed you."] * 10


def _model_dir(path: Path, schema: Any) -> Path:
    """A directory as training leaves it: tokenizer, weights and the recorded input format."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer(CORPUS, path, vocab_size=300, model_max_length=128)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, initializer_range=0.1,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(path, safe_serialization=True)
    write_input_format(format_for_schema(schema, tokenizer), path)
    return path


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    completion = _model_dir(root / "completion", "prompt_completion")
    text = root / "text"
    shutil.copytree(completion, text)
    write_input_format(format_for_schema("text", load_tokenizer(text)), text)
    return {"completion": completion, "text": text}


@pytest.fixture(scope="module")
def clients(model_dirs: dict[str, Path], serve_app_module: Any) -> Iterator[dict[str, openai.OpenAI]]:
    from llmops.engine.config import EngineConfig
    from llmops.engine.transformers_backend import TransformersBackend
    from llmops.serve import ServeConfig, build_app

    engine = EngineConfig(threads=1, num_kv_blocks=64, max_num_seqs=4, max_num_batched_tokens=64)
    out = {}
    for name, directory in model_dirs.items():
        app = build_app(TransformersBackend(directory, engine), name, ServeConfig())
        url, _ = serve_app_module(app)
        out[name] = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60)
    yield out


def test_a_served_prompt_starts_with_bos_as_in_training(
    clients: dict[str, openai.OpenAI], model_dirs: dict[str, Path]
) -> None:
    tokenizer = load_tokenizer(model_dirs["completion"])
    prompt = PROMPTS[0]
    answer = clients["completion"].completions.create(
        model="completion", prompt=prompt, max_tokens=1, temperature=0
    )
    assert answer.usage is not None
    # bos + the prompt's tokens: what batching trained on (tokenizer defaults would drop the bos)
    assert answer.usage.prompt_tokens == 1 + len(text_token_ids(tokenizer, prompt))
    already = clients["completion"].completions.create(
        model="completion", prompt=f"{tokenizer.bos_token}{prompt}", max_tokens=1, temperature=0
    )
    assert already.usage is not None and already.usage.prompt_tokens == answer.usage.prompt_tokens


def test_served_answers_equal_the_evaluators_on_both_routes(
    clients: dict[str, openai.OpenAI], model_dirs: dict[str, Path]
) -> None:
    params = GenerationParams(max_tokens=12, temperature=0.0)
    generator = TransformersGenerator(model_dirs["completion"], threads=1)
    evaluated = [g.text for g in generator.generate([Prompt(p) for p in PROMPTS], params)]
    client = clients["completion"]
    for prompt, expected in zip(PROMPTS, evaluated, strict=True):
        same: Any = {"model": "completion", "max_tokens": 12, "temperature": 0}
        completion = client.completions.create(prompt=prompt, **same)
        chat = client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **same)
        assert completion.choices[0].text == expected
        assert chat.choices[0].message.content == expected
        assert completion.usage is not None and chat.usage is not None
        assert chat.usage.prompt_tokens == completion.usage.prompt_tokens  # no chat template added


def test_a_conversation_a_completion_model_never_saw_is_a_400_naming_the_route(
    clients: dict[str, openai.OpenAI],
) -> None:
    conversation: Any = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": PROMPTS[0]},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        clients["completion"].chat.completions.create(model="completion", messages=conversation, max_tokens=4)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "messages" and error["code"] == "chat_not_supported"
    assert "/v1/completions" in error["message"] and "one user message" in error["message"]


def test_a_text_model_refuses_chat_and_serves_completions(clients: dict[str, openai.OpenAI]) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        clients["text"].chat.completions.create(
            model="text", messages=[{"role": "user", "content": PROMPTS[0]}], max_tokens=4
        )
    assert "/v1/completions" in str(caught.value)
    answer = clients["text"].completions.create(model="text", prompt=PROMPTS[0], max_tokens=4, temperature=0)
    assert answer.choices[0].finish_reason in ("stop", "length")
