"""The replica through OpenAI's official Python client: shapes, streaming, n, usage, errors."""

from __future__ import annotations

from typing import Any

import openai
import pytest

SERVED = "fake-model"
ADAPTER = "fake-adapter"


@pytest.fixture(scope="module")
def client(replica: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=replica.v1, api_key="x", max_retries=0, timeout=10)


def _requests_of(replica: Any, marker: str) -> list[Any]:
    return [r for r in replica.backend.requests if marker in str(r.messages or r.prompt or "")]


def test_chat_completion_echoes_and_counts_usage(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=SERVED, messages=[{"role": "user", "content": "hello there world"}], max_tokens=8
    )
    assert answer.id.startswith("chatcmpl-")
    assert answer.object == "chat.completion"
    assert answer.model == SERVED
    assert len(answer.choices) == 1
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "hello there world "
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (
        3,
        3,
        6,
    )
    assert answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 1


def test_chat_max_tokens_stops_with_length(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=SERVED, messages=[{"role": "user", "content": "a b c d e"}], max_completion_tokens=2
    )
    assert answer.choices[0].message.content == "a b "
    assert answer.choices[0].finish_reason == "length"


def test_chat_stream_deltas_add_up(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=SERVED, messages=[{"role": "user", "content": "one two three"}], max_tokens=10, stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "one two three "
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")


def test_chat_stream_include_usage_sends_a_last_usage_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=SERVED,
        messages=[{"role": "user", "content": "x y"}],
        max_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (2, 2, 4)
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_n_fans_out_with_derived_ids_and_seeds(client: openai.OpenAI, replica: Any) -> None:
    answer = client.chat.completions.create(
        model=SERVED, messages=[{"role": "user", "content": "fan nout"}], n=2, seed=41, max_tokens=5
    )
    assert [c.index for c in answer.choices] == [0, 1]
    assert all(c.message.content == "fan nout " for c in answer.choices)
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (2, 4)  # prompt counted once
    sent = _requests_of(replica, "fan nout")
    assert sorted(r.request_id for r in sent) == [f"{answer.id}-0", f"{answer.id}-1"]
    assert sorted(r.sampling.seed for r in sent) == [41, 42]


def test_chat_stream_n2_keeps_choices_apart(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=SERVED, messages=[{"role": "user", "content": "left right"}], n=2, max_tokens=5, stream=True
    )
    texts = {0: "", 1: ""}
    finished = set()
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finished.add(choice.index)
    assert texts == {0: "left right ", 1: "left right "}
    assert finished == {0, 1}


def test_chat_sampling_fields_reach_the_engine(client: openai.OpenAI, replica: Any) -> None:
    client.chat.completions.create(
        model=SERVED,
        messages=[
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": "sampling probe"},
        ],
        max_tokens=3,
        temperature=0.5,
        top_p=0.9,
        stop=["END", "\n\n"],
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        extra_body={"top_k": 7, "repetition_penalty": 1.1},
    )
    (sent,) = _requests_of(replica, "sampling probe")
    s = sent.sampling
    assert (s.max_tokens, s.temperature, s.top_p, s.top_k) == (3, 0.5, 0.9, 7)
    assert (s.presence_penalty, s.frequency_penalty, s.repetition_penalty) == (0.5, -0.5, 1.1)
    assert s.stop == ("END", "\n\n")
    assert sent.messages[0].role == "system"  # developer is treated as system


def test_chat_logprobs(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=SERVED,
        messages=[{"role": "user", "content": "p q"}],
        max_tokens=4,
        logprobs=True,
        top_logprobs=2,
    )
    content = answer.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None
    assert [t.token for t in content] == ["p", "q"]
    assert all(t.logprob == -0.5 and len(t.top_logprobs) == 2 for t in content)
    assert content[0].bytes == list(b"p")


def test_adapter_name_selects_the_adapter(client: openai.OpenAI, replica: Any) -> None:
    client.chat.completions.create(model=ADAPTER, messages=[{"role": "user", "content": "adapter probe"}])
    (sent,) = _requests_of(replica, "adapter probe")
    assert sent.adapter == ADAPTER


def test_completions_plain_and_stream(client: openai.OpenAI) -> None:
    answer = client.completions.create(model=SERVED, prompt="the cat sat", max_tokens=2)
    assert answer.object == "text_completion"
    assert answer.id.startswith("cmpl-")
    assert answer.choices[0].text == "the cat "
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.total_tokens == 5
    stream = client.completions.create(
        model=SERVED, prompt="the cat sat", max_tokens=5, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "the cat sat "
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_completions_token_ids_and_batches(client: openai.OpenAI, replica: Any) -> None:
    answer = client.completions.create(model=SERVED, prompt=[5, 6, 7], max_tokens=8)
    assert answer.choices[0].text == "t5 t6 t7 "
    batch = client.completions.create(model=SERVED, prompt=["ab cd", "ef"], n=2, max_tokens=8)
    assert [c.index for c in batch.choices] == [0, 1, 2, 3]
    assert [c.text for c in batch.choices] == ["ab cd ", "ab cd ", "ef ", "ef "]
    assert batch.usage is not None
    assert (batch.usage.prompt_tokens, batch.usage.completion_tokens) == (3, 6)


def test_completions_default_max_tokens_is_16_capped_to_context(client: openai.OpenAI, replica: Any) -> None:
    client.completions.create(model=SERVED, prompt="default length probe")
    (sent,) = _requests_of(replica, "default length probe")
    assert sent.sampling.max_tokens == 16
    long_prompt = "w " * 60 + "capped probe"
    client.completions.create(model=SERVED, prompt=long_prompt)
    (sent,) = _requests_of(replica, "capped probe")
    assert sent.sampling.max_tokens == 64 - 62


def test_completions_logprobs(client: openai.OpenAI) -> None:
    answer = client.completions.create(model=SERVED, prompt="aa bb", max_tokens=5, logprobs=1)
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.tokens == ["aa", "bb"]
    assert logprobs.token_logprobs == [-0.5, -0.5]
    assert logprobs.text_offset == [0, 3]
    assert logprobs.top_logprobs == [{"aa": -0.5}, {"bb": -0.5}]


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [SERVED, ADAPTER]
    assert all(m.object == "model" for m in models.data)
    assert client.models.retrieve(ADAPTER).id == ADAPTER
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_embeddings_base64_default_and_float(client: openai.OpenAI) -> None:
    answer = client.embeddings.create(model=SERVED, input=["a b c", "d"])  # the client asks for base64
    assert [d.index for d in answer.data] == [0, 1]
    assert answer.data[0].embedding == pytest.approx([3.0, 1.0, 0.5])
    assert answer.data[1].embedding == pytest.approx([1.0, 1.0, 0.5])
    assert answer.usage.prompt_tokens == 4
    floats = client.embeddings.create(model=SERVED, input="x y", encoding_format="float")
    assert floats.data[0].embedding == [2.0, 1.0, 0.5]


def test_context_overflow_is_a_bad_request_naming_the_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=SERVED, messages=[{"role": "user", "content": "hi"}], max_tokens=100
        )
    assert info.value.status_code == 400
    body: Any = info.value.body
    assert body["param"] == "max_tokens"
    assert "exceeds the context" in body["message"]


def test_invalid_input_when_streaming_is_still_a_status(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=SERVED, messages=[{"role": "user", "content": "TOOLONG"}], max_tokens=2, stream=True
        )


def test_unknown_model_is_404_listing_served_models(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    body: Any = info.value.body
    assert body["param"] == "model"
    assert body["code"] == "model_not_found"
    assert SERVED in body["message"] and ADAPTER in body["message"]


def test_rate_limited_backend_is_429_with_retry_after(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=SERVED, messages=[{"role": "user", "content": "RATELIMIT"}])
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "7"


def test_overloaded_backend_is_503_with_retry_after(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.completions.create(model=SERVED, prompt="OVERLOAD", stream=True)
    assert info.value.status_code == 503
    assert info.value.response.headers["retry-after"] == "2"
    body: Any = info.value.body
    assert body["type"] == "overloaded_error"


def test_bad_request_errors_name_the_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=SERVED, messages=[{"role": "user", "content": "hi"}], top_logprobs=3
        )
    body: Any = info.value.body
    assert body["param"] == "top_logprobs"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=SERVED, messages=[{"role": "user", "content": "hi"}], n=5)
    body = info.value.body
    assert body["param"] == "n" and "at most 4" in body["message"]


def test_a_choice_failing_mid_stream_raises_in_the_client(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=SERVED, messages=[{"role": "user", "content": "FAIL now please"}], stream=True
    )
    with pytest.raises(openai.APIError) as info:
        list(stream)
    assert "generation failed" in info.value.message
    assert "/secret/path" not in info.value.message


def test_a_choice_failing_without_stream_is_a_500_without_internals(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(
            model=SERVED, messages=[{"role": "user", "content": "FAIL now please"}]
        )
    assert info.value.status_code == 500
    assert "/secret/path" not in str(info.value.body)
