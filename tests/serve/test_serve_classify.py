"""``/v1/classify`` on a replica whatever it serves: a decoder refuses it with a 400 naming ``model``;
the OpenAPI documents of replica and gateway list every status and the real request schema; an
encoder version is served alone (no base, no adapters, no draft)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.serve.conftest import SERVED, FakeBackend

from llmops.engine.config import EngineConfig
from llmops.errors import InvalidInput
from llmops.gateway.app import create_app
from llmops.gateway.config import GatewayConfig
from llmops.serve import ServeConfig, build_app
from llmops.serve.loading import resolve_model
from llmops.serve.replica import build_backend, resolve_draft
from llmops.store.home import Home

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_decoder_refuses_classify_naming_the_model() -> None:
    app = build_app(FakeBackend(delay=0), SERVED, ServeConfig())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://replica") as client:
        answer = await client.post("/v1/classify", json={"model": SERVED, "input": ["where is my order?"]})
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["param"] == "model" and "classification head" in error["message"]
        unknown = await client.post("/v1/classify", json={"model": "nope", "input": "x"})
        assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"
        blank = await client.post("/v1/classify", json={"model": SERVED, "input": ["a", " "]})
        assert blank.status_code == 400 and blank.json()["error"]["param"] == "input[1]"


def test_the_documents_list_every_status_and_the_classify_body(sqlite_home: Home) -> None:
    replica = build_app(FakeBackend(delay=0), SERVED, ServeConfig(max_embedding_inputs=8)).openapi()
    operation = replica["paths"]["/v1/classify"]["post"]
    assert set(operation["responses"]) == {"200", "400", "404", "413", "429", "500", "502", "503"}
    schema = replica["components"]["schemas"]["ClassifyRequest"]
    assert schema["required"] == ["model", "input"]
    arrays = [s for s in schema["properties"]["input"]["anyOf"] if s["type"] == "array"]
    assert arrays[0]["maxItems"] == 8 and arrays[0]["items"]["pattern"] == r"\S"
    assert "ClassificationList" in str(operation["responses"]["200"])

    price = {"input_usd_per_1k_tokens": 1.0, "output_usd_per_1k_tokens": 0.0}
    config = GatewayConfig.model_validate({"deployments": [{"name": "intent", "price": price}]})
    gateway = create_app(config, sqlite_home).openapi()
    operation = gateway["paths"]["/v1/classify"]["post"]
    assert set(operation["responses"]) == {
        "200", "400", "401", "403", "404", "413", "429", "431", "500", "502", "503", "504",
    }  # fmt: skip
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ClassifyRequest"}
    assert gateway["components"]["schemas"]["ClassifyRequest"]["properties"]["stream"]["anyOf"]
    assert operation["security"] == [{"bearer": []}]
    assert "GetLoggedRequest" in operation["responses"]["200"]["links"]


def test_an_encoder_is_served_alone(tmp_path: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path / "encoder"
    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=16, num_labels=2)  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(folder)
    with pytest.raises(InvalidInput, match="encoder") as refused:
        resolve_model(str(folder), adapters=["x=/somewhere"])
    assert refused.value.param == "adapter"
    with pytest.raises(InvalidInput, match="without --base") as refused:
        resolve_model(str(folder), base="/somewhere")
    model = resolve_model(str(folder))
    assert model.is_encoder and model.adapters == {}
    with pytest.raises(InvalidInput, match="no draft") as refused:
        build_backend(model, EngineConfig(threads=1), draft=model)
    assert refused.value.param == "speculative.draft"
    drafting = EngineConfig(threads=1, speculative={"draft": str(folder), "k": 2})
    with pytest.raises(InvalidInput, match="cannot generate") as refused:
        resolve_draft(drafting)
    assert refused.value.param == "speculative.draft"
