"""The home is private whatever the umask: the folder and every folder in it 0700, every file 0600
(immutable artifacts 0400), and the files the gateway writes for its workers hold no credentials."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import CliRunner

from llmops.registry import Registry
from llmops.settings import Settings
from llmops.store.home import open_home

READ_ONLY_ARTIFACT = 0o400  # artifacts are immutable: owner read-only


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The common default umask, under which files come out 0644 unless made private on purpose."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        if not path.is_symlink():
            found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


def _assert_private(root: Path) -> dict[str, int]:
    modes = _modes(root)
    for name, mode in modes.items():
        path = root / name
        if path.is_dir():
            assert mode == 0o700, (name, oct(mode))
        elif name.startswith("artifacts/blobs/") or name.startswith("artifacts/trees/"):
            assert mode in (0o600, READ_ONLY_ARTIFACT), (name, oct(mode))
        else:
            assert mode == 0o600, (name, oct(mode))
    return modes


def test_init_and_first_use_create_a_private_home_under_umask_022(
    cli: CliRunner, umask_022: None, tiny_model_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    assert cli("init").code == 0
    modes = _modes(home)
    assert modes["."] == 0o700 and modes["llmops.db"] == 0o600 and modes["secret"] == 0o600

    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "hello"}\n')
    assert cli("data", "ingest", rows, "--name", "support").code == 0
    assert cli("models", "register", tiny_model_dir, "--name", "tiny").code == 0
    modes = _assert_private(home)
    assert any(name.startswith("artifacts/blobs/") for name in modes)
    assert os.umask(0o022) == 0o022  # the command left the caller's umask as it found it


def test_the_python_api_creates_a_private_home_and_store_files(
    umask_022: None, tiny_model_dir: Path, tmp_path: Path
) -> None:
    home = open_home(Settings(home=tmp_path / "api-home"))
    Registry.from_home(home).register(tiny_model_dir, "tiny")
    with home.store.engine.connect():  # a connection holds the WAL and shared-memory files open
        modes = _assert_private(tmp_path / "api-home")
        assert {"llmops.db", "llmops.db-wal", "llmops.db-shm"} <= set(modes)


def test_serve_with_workers_keeps_the_redis_password_out_of_the_home(
    cli: CliRunner, umask_022: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    from llmops.cli import serve_gateway

    started: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.update(app=app, **options))
    for name in ("LLMOPS_GATEWAY_CONFIG_FILE", "LLMOPS_GATEWAY_SECRETS", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(name, raising=False)  # serve sets them for its workers; undo after the test
    url = "redis://:s3cret-PASSWORD@127.0.0.1:6379/0"
    webhooks = {"ops": {"url": "https://hooks.example.com/T0KEN", "headers": {"Authorization": "Bearer HDR"}}}
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({"monitor": {"alert_rules": {"webhooks": webhooks}}}))

    served = cli("serve", "--config", config, "--workers", "2", "--redis-url", url, "--port", "0")
    assert served.code == 0, served.err
    assert started["workers"] == 2 and started["factory"] is True
    home = tmp_path / "home"
    _assert_private(home)
    for path in (p for p in home.rglob("*") if p.is_file() and "artifacts" not in p.parts):
        held = path.read_bytes()
        for secret in (b"s3cret-PASSWORD", b"T0KEN", b"Bearer HDR"):
            assert secret not in held, (path, secret)

    app = serve_gateway.worker_app()  # what each worker builds, from the file and its environment
    assert app.state.gateway.config.redis_url == url
    webhook = app.state.gateway.config.monitor.alert_rules.webhooks["ops"]
    assert webhook.url.endswith("T0KEN") and webhook.headers == {"Authorization": "Bearer HDR"}
