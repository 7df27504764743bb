"""An encoder classifier trained and registered through the CLI, served by a replica and reached
through the gateway: ``/v1/classify`` and ``/v1/embeddings`` with the same keys, limits, request log
and metrics as chat; chat refused with a 400 naming the cause; bad input refused naming the field."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from llmops.cli.main import main
from llmops.engine.config import EngineConfig
from llmops.engine.encoder_backend import EncoderBackend
from llmops.gateway.app import create_app
from llmops.registry import Registry
from llmops.security.roles import Role
from llmops.serve import ServeConfig
from llmops.serve.replica import prepare_replica
from llmops.settings import reset_settings
from llmops.store.home import Home, close_homes, open_home
from llmops.store.schema import GatewayRequest
from llmops.train.encoder_inference import EncoderRunner

pytestmark = pytest.mark.slow

# small enough to train in a few seconds on one thread; max_position_embeddings bounds the input
RECIPE = """
kind: encoder
name: intent-encoder
encoder: {task: classification}
model: {architecture: bert, hidden_size: 32, intermediate_size: 64, num_layers: 1, num_heads: 2,
        max_position_embeddings: 48}
data: {train: intent-train, validation: intent-validation, schema: prompt_completion}
tokenizer: {source: train, vocab_size: 400, min_frequency: 2}
optim: {lr: 3.0e-3, weight_decay: 0.01, warmup_steps: 5, max_steps: 60, batch_size: 32, seed: 0}
max_seq_len: 48
"""
TEXTS = ["where is my order?", "I want my money back"]


@pytest.fixture(scope="module")
def intent_encoder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The classifier's files, trained and registered through the CLI in a home of its own."""
    root = tmp_path_factory.mktemp("intent-encoder")
    (root / "encoder.yaml").write_text(RECIPE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMOPS_HOME", str(root / "home"))
        patch.delenv("LLMOPS_DATABASE_URL", raising=False)
        reset_settings()
        try:
            assert main(["data", "synth", "intent", "--name", "intent", "--n", "400", "--seed", "3"]) == 0
            assert main(["data", "split", "intent", "--key", "prompt"]) == 0
            assert main(["train", "run", str(root / "encoder.yaml"), "--threads", "1"]) == 0
            registry = Registry.from_home(open_home())
            version = registry.get("intent-encoder@1")
            assert version.tags["task"] == "classification" and version.format == "hf-encoder"
            yield registry.local_path("intent-encoder@1")
        finally:
            close_homes()
            reset_settings()


def _register(home: Home, model_dir: Path) -> Registry:
    registry = Registry.from_home(home)
    registry.set_alias("intent-encoder", "production", registry.register(model_dir, "intent-encoder").version)
    return registry


def _replica(home: Home) -> Any:
    app, _ = prepare_replica(
        "intent-encoder@production",
        ServeConfig(served_model_name="intent"),
        engine=EngineConfig(threads=1),
        open_store=lambda: home,
    )
    return app


def _row(home: Home, request_id: str, timeout: float = 5.0) -> GatewayRequest:
    deadline = time.monotonic() + timeout
    while True:
        with home.store.read() as session:
            row = session.execute(select(GatewayRequest).where(GatewayRequest.id == request_id)).scalar()
        if row is not None or time.monotonic() > deadline:
            assert row is not None, f"request {request_id} was not logged"
            return row
        time.sleep(0.05)


def test_an_encoder_classifies_through_the_gateway_with_a_key(
    home: Home, make_key: Any, gw: Any, intent_encoder: Path
) -> None:
    _register(home, intent_encoder)
    expected = EncoderRunner(intent_encoder).classify(TEXTS)
    key, limited = make_key(name="app"), make_key(name="one-a-minute", rpm=1)
    admin = gw.bearer(make_key(name="ops", role=Role.ADMIN))
    # output guardrails check generated text only: labels pass a JSON-output rule
    guardrails = {"output_schema": {"type": "object"}}
    deployment = gw.deployment("intent", model="intent-encoder@production", guardrails=guardrails)
    with gw.serve(_replica(home)) as replica:
        config = gw.config({**deployment, "upstreams": [{"url": replica}]})
        with gw.serve(create_app(config, home)) as gateway:
            body = {"model": "intent", "input": TEXTS, "user": "u1"}
            answer = httpx.post(f"{gateway}/v1/classify", json=body, headers=gw.bearer(key))
            assert answer.status_code == 200, answer.text
            result = answer.json()
            assert result["object"] == "list" and result["model"] == "intent"
            assert [d["label"] for d in result["data"]] == [p.label for p in expected]
            for item, prediction in zip(result["data"], expected, strict=True):
                assert set(item["probs"]) == set(EncoderRunner(intent_encoder).labels)
                assert abs(sum(item["probs"].values()) - 1.0) < 1e-4
                assert item["score"] == pytest.approx(max(prediction.scores), abs=1e-6)
            assert result["usage"]["prompt_tokens"] == sum(p.tokens for p in expected) > 0

            unauthorised = httpx.post(f"{gateway}/v1/classify", json=body, headers=gw.bearer("sk-wrong"))
            assert unauthorised.status_code == 401
            first = httpx.post(f"{gateway}/v1/classify", json=body, headers=gw.bearer(limited))
            again = httpx.post(f"{gateway}/v1/classify", json=body, headers=gw.bearer(limited))
            assert (first.status_code, again.status_code) == (200, 429)

            chat = gw.chat_body("intent")
            refused = httpx.post(f"{gateway}/v1/chat/completions", json=chat, headers=gw.bearer(key))
            assert refused.status_code == 400
            error = refused.json()["error"]
            assert error["code"] == "model_cannot_generate" and "cannot generate" in error["message"]
            assert error["param"] == "model" and "/v1/classify" in error["message"]
            metrics = httpx.get(f"{gateway}/metrics", headers=admin).text
            assert 'llmops_gateway_requests_total{deployment="intent",status="200"} 2.0' in metrics
            assert 'llmops_gateway_requests_total{deployment="intent",status="429"} 1.0' in metrics
    row = _row(home, answer.headers["x-request-id"])
    assert row.endpoint == "classify" and row.model_version == "intent-encoder@1"
    assert row.deployment == "intent" and row.status == 200 and row.user == "u1"
    assert row.prompt == "\n".join(TEXTS) and row.completion == "\n".join(p.label for p in expected)
    assert row.prompt_tokens == result["usage"]["prompt_tokens"] and row.completion_tokens == 0
    chat_row = _row(home, refused.headers["x-request-id"])
    assert chat_row.status == 400 and "cannot generate" in (chat_row.error or "")


def test_openai_client_embeddings_from_an_encoder_through_the_gateway(
    home: Home, make_key: Any, gw: Any, intent_encoder: Path
) -> None:
    _register(home, intent_encoder)
    expected = EncoderRunner(intent_encoder).embed(TEXTS)
    with gw.serve(_replica(home)) as replica:
        deployment = gw.deployment("intent", model="intent-encoder@production", upstreams=[{"url": replica}])
        with gw.serve(create_app(gw.config(deployment), home)) as gateway:
            client = openai.OpenAI(base_url=gateway + "/v1", api_key=make_key(), max_retries=0)
            answer = client.embeddings.create(model="intent", input=TEXTS)  # base64, decoded by the client
            assert [len(d.embedding) for d in answer.data] == [32, 32]  # mean pooling over the hidden size
            for got, want in zip(answer.data, expected, strict=True):
                assert got.embedding == pytest.approx(want, abs=1e-5)
            floats = client.embeddings.create(model="intent", input=TEXTS[0], encoding_format="float")
            assert floats.data[0].embedding == pytest.approx(expected[0], abs=1e-5)
            assert answer.usage.prompt_tokens > 0
            with pytest.raises(openai.BadRequestError, match="cannot generate"):
                client.chat.completions.create(model="intent", messages=[{"role": "user", "content": "hi"}])
            with pytest.raises(openai.BadRequestError, match="cannot generate"):
                client.completions.create(model="intent", prompt="hi", max_tokens=3)
            with pytest.raises(openai.BadRequestError, match="input"):
                client.embeddings.create(model="intent", input="word " * 100)


BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"model": "intent", "input": []}, "input"),
    ({"model": "intent", "input": ""}, "input"),
    ({"model": "intent", "input": "   "}, "input"),
    ({"model": "intent", "input": ["fine", ""]}, "input[1]"),
    ({"model": "intent", "input": [1, 2]}, "input"),
    ({"model": "intent", "input": 5}, "input"),
    ({"model": "intent", "input": {"text": "x"}}, "input"),
    ({"model": "intent"}, "input"),
    ({"model": 5, "input": "x"}, "model"),
    ({"model": "intent", "input": "x", "stream": True}, "stream"),
    ({"model": "intent", "input": ["x"] * 257}, "input"),
    ({"model": "intent", "input": "order " * 100}, "input"),
    ({"model": "intent", "input": ["fine", "order " * 100]}, "input[1]"),
]


@pytest.mark.anyio
async def test_bad_classify_input_is_refused_naming_the_field(
    home: Home, make_key: Any, gw: Any, intent_encoder: Path
) -> None:
    _register(home, intent_encoder)
    upstreams = gw.in_process(intent=_replica(home))
    config = gw.config(gw.deployment("intent", model="intent-encoder@production"))
    headers = gw.bearer(make_key())
    async with gw.client(home, config, upstreams) as (client, _):
        for body, param in BAD_BODIES:
            answer = await client.post("/v1/classify", json=body, headers=headers)
            assert answer.status_code == 400, (body, answer.text)
            assert answer.json()["error"]["param"] == param, (body, answer.json())
        too_long = {"model": "intent", "input": "order " * 100}
        answer = await client.post("/v1/classify", json=too_long, headers=headers)
        assert answer.json()["error"]["code"] == "context_length_exceeded"
        assert "48 tokens" in answer.json()["error"]["message"]  # the model's context, named


@pytest.mark.anyio
async def test_the_encoder_backend_batches_waiting_requests(intent_encoder: Path) -> None:
    """Requests waiting for the same work share one forward pass, and each gets its own answers."""
    backend = EncoderBackend(intent_encoder, threads=1)
    alone = [(await backend.classify([text]))[0].label for text in TEXTS * 3]
    passes: list[int] = []
    classify = backend.runner.classify

    def counted(texts: list[str]) -> Any:
        passes.append(len(texts))
        return classify(texts)

    backend.runner.classify = counted  # type: ignore[method-assign]
    together = await asyncio.gather(
        *(backend.classify([text]) for text in TEXTS * 3), backend.embed(TEXTS), backend.classify(TEXTS)
    )
    assert [answer[0].label for answer in together[:6]] == alone
    assert [c.label for c in together[-1]] == alone[:2] and len(together[-2]) == 2
    assert sum(passes) == 8 and len(passes) < 7, passes  # 8 texts in fewer passes than requests
    assert backend.stats().waiting == 0 and backend.stats().running == 0
