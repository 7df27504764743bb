"""examples/gateway.yaml is valid, uses every feature, and serves: two workers, a key, a request.

The slow test starts ``llmops serve --config`` on the example with only the replicas' URLs (to a
mock replica on loopback), the port and the Redis prefix changed, sends a chat request with a key,
and reads /metrics: every worker's process CPU and memory appear once, labelled with its pid.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from llmops.gateway.config import GatewayConfig
from llmops.security.keys import KeySpec, KeyStore
from llmops.security.roles import Role
from llmops.store.home import open_home

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gateway.yaml"
PROCESS_SAMPLES = ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds")


def test_the_example_is_valid_and_shows_every_feature() -> None:
    config = GatewayConfig.from_yaml(EXAMPLE)
    written = yaml.safe_load(EXAMPLE.read_text())
    assert {"limits", "cache", "request_log", "health", "http", "deployments", "monitor"} <= set(written)
    assert config.workers == 2 and config.limits.backend == "redis" and config.cache.enabled
    bot, small = config.deployments
    assert [arm.name for arm in bot.arms] == ["stable", "canary"] and bot.shadow is not None
    assert bot.fallbacks == [small.name] and bot.guardrails is not None and bot.prefix_affinity
    assert bot.price.usd_per_engine_second > 0 and small.price.input_usd_per_1k_tokens > 0
    assert config.monitor.online_eval is not None and config.monitor.alert_rules.rules


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pointed_at(url: str, node: Any) -> Any:
    """``node`` with every replica URL replaced by ``url``."""
    if isinstance(node, dict):
        return {k: (url if k == "url" else _pointed_at(url, v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_pointed_at(url, item) for item in node]
    return node


@contextmanager
def _running(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(args, env=env, start_new_session=True)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 300  # two workers import the whole gateway; slow on a busy machine
    while time.monotonic() < deadline:
        assert process.poll() is None, "the gateway exited"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("the gateway did not become ready")


def _wait_for_both_workers(url: str, headers: dict[str, str]) -> None:
    """/readyz answers once one worker is up; the second may still be importing on a busy machine."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        text = httpx.get(f"{url}/metrics", headers=headers, timeout=30).text
        samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
        if len({s.labels.get("pid") for s in samples if s.name == PROCESS_SAMPLES[0]}) >= 2:
            return
        time.sleep(0.5)
    raise AssertionError("the second gateway worker did not start")


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.slow
def test_the_example_serves_a_request_through_two_workers(tmp_path: Path, gw: Any, redis_prefix: str) -> None:
    mock = subprocess.Popen(
        [sys.executable, str(gw.mock_script), "--name", "replica"], stdout=subprocess.PIPE
    )
    try:
        assert mock.stdout is not None
        replica = f"http://127.0.0.1:{int(mock.stdout.readline())}"
        settings = _pointed_at(replica, yaml.safe_load(EXAMPLE.read_text()))
        settings["redis_prefix"] = redis_prefix
        config = tmp_path / "gateway.yaml"
        config.write_text(yaml.safe_dump(settings))
        home = open_home()
        keys = KeyStore.from_home(home)
        consumer = keys.create(KeySpec(name="app", role=Role.CONSUMER, budget_usd=5.0)).key
        developer = keys.create(KeySpec(name="ops", role=Role.DEVELOPER)).key
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "LLMOPS_HOME": str(home.settings.resolved_home())}
        args = [sys.executable, "-m", "llmops", "serve", "--config", str(config)]
        with _running([*args, "--port", str(port), "--allow-loopback"], env) as gateway:
            _wait_ready(url, gateway)
            _wait_for_both_workers(url, gw.bearer(developer))
            body = {
                "model": "support-bot",
                "messages": [{"role": "user", "content": "hello"}],
                "max_tokens": 3,
            }
            answer = httpx.post(
                f"{url}/v1/chat/completions", json=body, headers=gw.bearer(consumer), timeout=60
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["choices"][0]["message"]["content"].startswith("replica")
            scrapes = [
                httpx.get(f"{url}/metrics", headers=gw.bearer(developer), timeout=30) for _ in range(4)
            ]
            for scrape in scrapes:
                assert scrape.status_code == 200, scrape.text
                _check_workers(scrape.text, gateway.pid)
    finally:
        mock.kill()
        mock.wait(timeout=30)


def _check_workers(text: str, server_pid: int) -> None:
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    for name in PROCESS_SAMPLES:
        pids = [int(s.labels["pid"]) for s in samples if s.name == name]
        assert len(pids) == 2 == len(set(pids)), (name, pids)  # each worker once, none dropped
        assert {_parent_of(pid) for pid in pids} == {server_pid}  # the serve command's workers
    assert [s.name for s in samples].count("python_info") == 1
    served = [s for s in samples if s.name == "llmops_gateway_requests_total"]
    assert [(s.labels, s.value) for s in served] == [({"deployment": "support-bot", "status": "200"}, 1.0)]
