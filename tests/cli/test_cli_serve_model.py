"""`llmops serve --model REF` prints where it listens, and its /metrics shows the engine and replica."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import CliRunner
from tests.factories import make_tiny_model
from tests.servers import serving

from llmops.registry import Registry
from llmops.security.keys import KeySpec, KeyStore
from llmops.security.roles import Role
from llmops.store.home import open_home
from llmops.train.tokenizer import train_tokenizer

REPLICA = 'replica="in-process:tiny@1"'


@pytest.mark.slow
def test_serve_model_prints_its_url_and_exposes_engine_metrics(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    home = open_home()
    texts = [f"where is my order number {i}" for i in range(200)]
    tokenizer = train_tokenizer(texts, tmp_path, vocab_size=300)
    make_tiny_model(tmp_path, vocab_size=len(tokenizer))
    Registry.from_home(home).register(tmp_path, "tiny")
    keys = KeyStore.from_home(home)
    consumer = keys.create(KeySpec(name="c", role=Role.CONSUMER)).key
    developer = keys.create(KeySpec(name="d", role=Role.DEVELOPER)).key
    started: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.update(app=app, **options))

    result = cli("serve", "--model", "tiny@1", "--free", "--port", "4321", "--threads", "1")

    assert result.code == 0, result.err
    assert "http://127.0.0.1:4321" in result.out and started["port"] == 4321
    with serving(started["app"]) as url:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "where is"}], "max_tokens": 3}
        auth = {"Authorization": f"Bearer {consumer}"}
        answer = httpx.post(f"{url}/v1/chat/completions", json=body, headers=auth, timeout=60)
        assert answer.status_code == 200, answer.text
        scraped = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {developer}"}, timeout=30)
    assert scraped.status_code == 200
    text = scraped.text
    assert 'llmops_gateway_requests_total{deployment="tiny",status="200"} 1.0' in text
    for engine in ("requests_waiting", "requests_running", "kv_cache_usage_ratio", "prefix_cache_hits_total"):
        assert f"llmops_engine_{engine}{{{REPLICA}}}" in text, engine
    assert f"llmops_engine_generation_tokens_total{{{REPLICA}}}" in text
    assert 'route="/v1/chat/completions",status="200"' in text and "llmops_http_requests_total{" in text
    assert "llmops_time_to_first_token_seconds_count{" in text
    families = Counter(f.name for f in text_string_to_metric_families(text))
    assert not [name for name, count in families.items() if count > 1], "one family per name"
    promtool = shutil.which("promtool")
    if promtool:
        checked = subprocess.run([promtool, "check", "metrics"], input=scraped.content, capture_output=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
