"""The dashboard through its entry points: `llmops ui` over a store, and `llmops serve` mounting it
under /ui/ of the gateway, each as a real process on a loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from llmops.dashboard.headers import CONTENT_SECURITY_POLICY
from llmops.security.keys import KeySpec, KeyStore
from llmops.security.roles import Role
from llmops.settings import Settings
from llmops.store.home import open_home

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _llmops(home: Path, *args: str, ready: str) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "llmops", "--home", str(home), *args]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if httpx.get(ready, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def _log_in(base: str, key: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=base, timeout=10)
    client.get("/ui/login")
    response = client.post("/ui/login", data={"key": key, "csrf": client.cookies["llmops_login"]})
    assert response.status_code == 303 and response.headers["location"] == "/ui/"
    return client, response.headers["set-cookie"]


def _admin_key(home: Path) -> str:
    store = KeyStore.from_home(open_home(Settings(home=home)))
    return store.create(KeySpec(name="cli test", role=Role.ADMIN)).key


def test_llmops_ui_serves_the_dashboard_over_a_store(tmp_path: Path) -> None:
    home, port = tmp_path / "home", _free_port()
    key = _admin_key(home)
    base = f"http://127.0.0.1:{port}"
    with _llmops(
        home, "ui", "--port", str(port), "--session-minutes", "5", ready=f"{base}/ui/login"
    ) as process:
        assert httpx.get(f"{base}/").headers["location"] == "/ui/"
        client, cookie = _log_in(base, key)
        assert "Max-Age=300" in cookie  # --session-minutes 5
        page = client.get("/ui/keys")
        assert page.status_code == 200 and "cli test" in page.text
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    output = process.stdout.read() if process.stdout else ""
    assert f"dashboard on http://127.0.0.1:{port}/ui/" in output


def test_llmops_serve_mounts_the_dashboard_under_ui(tmp_path: Path) -> None:
    home, port = tmp_path / "home", _free_port()
    key = _admin_key(home)
    base = f"http://127.0.0.1:{port}"
    with _llmops(home, "serve", "--port", str(port), ready=f"{base}/healthz") as process:
        client, _ = _log_in(base, key)
        page = client.get("/ui/")
        assert page.status_code == 200 and 'data-metric="requests">0<' in page.text
        assert page.headers.get_list("content-security-policy") == [CONTENT_SECURITY_POLICY]
        assert (
            httpx.get(f"{base}/healthz").headers["content-security-policy"].startswith("default-src 'none'")
        )
    output = process.stdout.read() if process.stdout else ""
    assert f"dashboard on http://127.0.0.1:{port}/ui/" in output
