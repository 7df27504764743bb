"""Request models, error formatting and fan-out planning, without a server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from llmops.engine.types import ModelInfo, TokenEvent
from llmops.errors import InvalidInput
from llmops.serve import ServeConfig
from llmops.serve.choices import ChoiceState, new_states, usage
from llmops.serve.embeddings import encode_base64
from llmops.serve.error_responses import validation_error
from llmops.serve.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from llmops.serve.sampling import chat_requests, check_limits, completion_requests, derive_seed

INFO = ModelInfo(model_id="m", max_model_len=100)


def _chat(**extra: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "one two"}], **extra}
    )


def _first_error(model: type[Any], body: dict[str, Any]) -> InvalidInput:
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    return validation_error(info.value.errors())


def test_stop_is_normalised_to_a_tuple() -> None:
    assert _chat(stop="END").stop == ("END",)
    assert _chat(stop=None).stop == ()
    assert _chat(stop=["a", "b", "c", "d"]).stop == ("a", "b", "c", "d")


def test_prompt_shapes() -> None:
    def prompts(value: Any) -> list[Any]:
        return CompletionRequest.model_validate({"model": "m", "prompt": value}).prompt

    assert prompts("hi") == ["hi"]
    assert prompts([1, 2]) == [(1, 2)]
    assert prompts(["a", "b"]) == ["a", "b"]
    assert prompts([[1], [2, 3]]) == [(1,), (2, 3)]
    bad_prompts: list[Any] = [[], [-1], [True], [[1], "a"], [[]], {"a": 1}]
    for bad in bad_prompts:
        error = _first_error(CompletionRequest, {"model": "m", "prompt": bad})
        assert error.param == "prompt", bad


def test_validation_errors_name_the_field_in_openai_style() -> None:
    error = _first_error(ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": 5}]})
    assert error.param == "messages[0].content"
    assert error.status_code == 400
    error = _first_error(ChatCompletionRequest, {"model": "m", "messages": [], "api_base": "http://x"})
    assert error.param == "api_base"
    assert "never contacts another URL" in error.message
    error = _first_error(EmbeddingRequest, {"model": "m", "input": "x", "webhook_url": "http://x"})
    assert error.param == "webhook_url"
    error = _first_error(EmbeddingRequest, {"model": "m", "input": "x", "dimensions": 8})
    assert error.param == "dimensions"


def test_neutral_values_of_unsupported_features_pass() -> None:
    body = _chat(tools=[], tool_choice="none", response_format={"type": "text"}, logit_bias={})
    assert body.messages[0].content == "one two"
    assert CompletionRequest.model_validate(
        {"model": "m", "prompt": "x", "echo": False, "best_of": 1}
    ).prompt == ["x"]


def test_config_limits() -> None:
    config = ServeConfig(max_n=2, max_top_logprobs=5, max_prompts_per_request=2)
    check_limits(_chat(n=2), config, 5)
    with pytest.raises(InvalidInput) as info:
        check_limits(_chat(n=3), config, 0)
    assert info.value.param == "n"
    with pytest.raises(InvalidInput) as info:
        check_limits(_chat(logprobs=True, top_logprobs=6), config, 6)
    assert info.value.param == "top_logprobs"
    body = CompletionRequest.model_validate({"model": "m", "prompt": ["a", "b", "c"], "logprobs": 6})
    with pytest.raises(InvalidInput) as info:
        check_limits(body, config, 6)
    assert info.value.param == "logprobs"
    with pytest.raises(InvalidInput) as info:
        check_limits(body, ServeConfig(max_prompts_per_request=2), 0, prompts=3)
    assert info.value.param == "prompt"


def test_derived_seeds_wrap_into_int64() -> None:
    assert derive_seed(None, 3) is None
    assert [derive_seed(10, i) for i in range(3)] == [10, 11, 12]
    assert derive_seed(2**63 - 1, 1) == -(2**63)


def test_chat_requests_fan_out_and_cap_the_default_length() -> None:
    body = _chat(
        n=3, seed=5, messages=[{"role": "developer", "content": "a b"}, {"role": "user", "content": "c"}]
    )
    requests = asyncio.run(
        chat_requests(body, "chatcmpl-x", "lora", ServeConfig(), INFO, lambda t: len(t.split()))
    )
    assert [r.request_id for r in requests] == ["chatcmpl-x-0", "chatcmpl-x-1", "chatcmpl-x-2"]
    assert [r.sampling.seed for r in requests] == [5, 6, 7]
    assert {r.adapter for r in requests} == {"lora"}
    assert requests[0].messages is not None and requests[0].messages[0].role == "system"
    # 100-token context minus an estimate of the templated prompt (5 words + 8 per message + 8).
    assert requests[0].sampling.max_tokens == 100 - (5 + 8 * 3)
    unknown = asyncio.run(
        chat_requests(_chat(), "c", None, ServeConfig(default_max_tokens=40), INFO, lambda t: None)
    )
    assert unknown[0].sampling.max_tokens == 40
    explicit = asyncio.run(chat_requests(_chat(max_tokens=7), "c", None, ServeConfig(), INFO, lambda t: 1))
    assert explicit[0].sampling.max_tokens == 7


def test_completion_requests_index_choices_by_prompt() -> None:
    body = CompletionRequest.model_validate({"model": "m", "prompt": [[1, 2], [3]], "n": 2, "logprobs": 2})
    requests = asyncio.run(completion_requests(body, "cmpl-x", None, ServeConfig(), INFO, lambda t: None))
    assert [r.prompt_token_ids for r in requests] == [(1, 2), (1, 2), (3,), (3,)]
    assert [r.request_id for r in requests] == [f"cmpl-x-{i}" for i in range(4)]
    assert all(r.sampling.logprobs and r.sampling.top_logprobs == 2 for r in requests)
    assert all(r.sampling.max_tokens == 16 for r in requests)


def test_usage_counts_each_prompt_once() -> None:
    states = new_states(4, 2)
    for state, prompt_tokens in zip(states, (5, 5, 3, 3), strict=True):
        event = TokenEvent(
            "r", 1, "x", prompt_tokens=prompt_tokens, completion_tokens=2, cached_prompt_tokens=1
        )
        state.add(event)
    totals = usage(states)
    assert (totals.prompt_tokens, totals.completion_tokens, totals.total_tokens) == (8, 8, 16)
    assert totals.prompt_tokens_details is not None and totals.prompt_tokens_details.cached_tokens == 2
    assert ChoiceState(index=0).text == ""


def test_base64_embeddings_are_little_endian_float32() -> None:
    import base64
    import struct

    encoded = encode_base64([1.0, -0.5])
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (1.0, -0.5)
