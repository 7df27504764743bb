"""The embedded shape: `llmops serve --model REF` runs engine, replica app and gateway in one process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from tests.factories import make_tiny_model

from llmops.registry import Registry
from llmops.security.keys import KeySpec, KeyStore
from llmops.security.roles import Role
from llmops.store.home import Home, open_home
from llmops.train.tokenizer import train_tokenizer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _register_tiny(home: Home, folder: Path) -> None:
    texts = [f"where is my order number {i}" for i in range(200)]
    tokenizer = train_tokenizer(texts, folder, vocab_size=300)
    make_tiny_model(folder, vocab_size=len(tokenizer))
    Registry.from_home(home).register(folder, "tiny")


@pytest.mark.slow
def test_openai_client_through_embedded_gateway(tmp_path: Path) -> None:
    home = open_home()
    _register_tiny(home, tmp_path / "tiny")
    key = KeyStore.from_home(home).create(KeySpec(name="t", role=Role.CONSUMER)).key
    port = _free_port()
    env = {**os.environ, "LLMOPS_HOME": str(home.settings.resolved_home())}
    args = ["serve", "--model", "tiny@1", "--free", "--port", str(port), "--threads", "1"]
    process = subprocess.Popen([sys.executable, "-m", "llmops", *args], env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key)
        answer = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "where is my order"}], max_tokens=5
        )
        assert answer.usage is not None and answer.usage.completion_tokens >= 1
        chunks = list(
            client.completions.create(
                model="tiny", prompt="where is", max_tokens=4, stream=True, temperature=0
            )
        )
        assert chunks and any(c.choices and c.choices[0].text for c in chunks)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-llmops-wrong").models.list()
    finally:
        process.terminate()
        process.wait(timeout=30)
