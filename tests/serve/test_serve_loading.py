"""Resolving what a replica serves (paths, registry references, adapters) and the CLI around it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from llmops.errors import InvalidInput, NotFound
from llmops.registry import Registry
from llmops.serve import ServeConfig
from llmops.serve import replica as replica_module
from llmops.serve.loading import parse_adapter_option, resolve_model
from llmops.store.home import Home


def _weights(file: Path, name: str) -> None:
    """A small valid safetensors file whose contents differ by ``name`` (so digests differ)."""
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.tensor([float(b) for b in name.encode()])}, str(file))


def _model_dir(path: Path) -> Path:
    """A directory that passes the model-file checks (the weights are never loaded here)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    _weights(path / "model.safetensors", path.name)
    return path


def _adapter_dir(path: Path, base: str = "nowhere/base") -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "base_model_name_or_path": base})
    )
    _weights(path / "adapter_model.safetensors", path.name)
    return path


def test_a_local_model_directory(tmp_path: Path) -> None:
    base = _model_dir(tmp_path / "tiny-llama")
    resolved = resolve_model(str(base), open_store=_no_store)
    assert resolved.base_dir == base.resolve()
    assert resolved.default_name == "tiny-llama"
    assert (resolved.adapters, resolved.default_adapter) == ({}, None)


def _no_store() -> Home:
    raise AssertionError("a local path must not open the store")


def test_pickle_weights_and_missing_paths_are_refused(tmp_path: Path) -> None:
    bad = _model_dir(tmp_path / "pickled")
    (bad / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(InvalidInput, match="pickle"):
        resolve_model(str(bad), open_store=_no_store)
    with pytest.raises(InvalidInput, match="does not exist") as info:
        resolve_model(str(tmp_path / "missing" / "dir"), open_store=_no_store)
    assert info.value.param == "model"


def test_a_local_adapter_is_served_on_its_base(tmp_path: Path) -> None:
    base = _model_dir(tmp_path / "base")
    adapter = _adapter_dir(tmp_path / "lora", base=str(base))
    resolved = resolve_model(str(adapter), open_store=_no_store)
    assert resolved.base_dir == base.resolve()
    assert resolved.adapters == {"lora": adapter.resolve()}
    assert (resolved.default_adapter, resolved.default_name) == ("lora", "lora")


def test_a_local_adapter_without_a_findable_base_needs_base(tmp_path: Path) -> None:
    base = _model_dir(tmp_path / "base")
    adapter = _adapter_dir(tmp_path / "lora")
    with pytest.raises(InvalidInput, match="--base") as info:
        resolve_model(str(adapter), open_store=_no_store)
    assert info.value.param == "base"
    assert resolve_model(str(adapter), base=str(base), open_store=_no_store).base_dir == base.resolve()
    with pytest.raises(InvalidInput, match="only for serving a PEFT adapter"):
        resolve_model(str(base), base=str(base), open_store=_no_store)
    with pytest.raises(InvalidInput, match="not a full model"):
        resolve_model(str(adapter), base=str(adapter), open_store=_no_store)


def test_registry_references_resolve_to_verified_files(tmp_path: Path, sqlite_home: Home) -> None:
    registry = Registry.from_home(sqlite_home)
    registry.register(_model_dir(tmp_path / "b"), "base")
    registry.set_alias("base", "production", 1)
    registry.register(_adapter_dir(tmp_path / "a"), "tuned", base="base@1")
    resolved = resolve_model("base@production", open_store=lambda: sqlite_home)
    assert resolved.base_dir == registry.local_path("base@1")
    assert resolved.default_name == "base@production"
    tuned = resolve_model("tuned@1", open_store=lambda: sqlite_home)
    assert tuned.base_dir == registry.local_path("base@1")
    assert tuned.adapters == {"tuned": registry.local_path("tuned@1")}
    assert tuned.default_adapter == "tuned"
    with pytest.raises(NotFound):
        resolve_model("nosuch@production", open_store=lambda: sqlite_home)


def test_extra_adapters_must_match_the_served_base(tmp_path: Path, sqlite_home: Home) -> None:
    registry = Registry.from_home(sqlite_home)
    registry.register(_model_dir(tmp_path / "b1"), "base")
    registry.register(_model_dir(tmp_path / "other"), "other")
    registry.register(_adapter_dir(tmp_path / "a"), "tuned", base="base@1")
    registry.register(_adapter_dir(tmp_path / "x"), "foreign", base="other@1")
    store = lambda: sqlite_home  # noqa: E731
    local = _adapter_dir(tmp_path / "local-lora")
    resolved = resolve_model("base", adapters=["tuned@1", f"mine={local}"], open_store=store)
    assert set(resolved.adapters) == {"tuned", "mine"}
    assert resolved.default_adapter is None
    with pytest.raises(InvalidInput, match="not the served base"):
        resolve_model("base", adapters=["foreign"], open_store=store)
    with pytest.raises(InvalidInput, match="not a PEFT adapter"):
        resolve_model("base", adapters=["other"], open_store=store)
    with pytest.raises(InvalidInput, match="two adapters"):
        resolve_model("base", adapters=["tuned", "tuned=tuned@1"], open_store=store)


def test_parse_adapter_option() -> None:
    assert parse_adapter_option("a=b@1") == ("a", "b@1")
    assert parse_adapter_option("./dir") == (None, "./dir")
    with pytest.raises(InvalidInput):
        parse_adapter_option("=x")


def test_serving_an_adapter_routes_the_served_name_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_backend: Any, serve_app: Any
) -> None:
    base = _model_dir(tmp_path / "base")
    adapter = _adapter_dir(tmp_path / "fake-adapter", base=str(base))
    built: list[Any] = []

    def build_backend(model: Any, engine: Any = None, draft: Any = None) -> Any:
        built.append(model)
        return fake_backend

    monkeypatch.setattr(replica_module, "build_backend", build_backend)
    app, effective = replica_module.prepare_replica(str(adapter), ServeConfig(port=0))
    assert (effective.served_model_name, effective.default_adapter) == ("fake-adapter", "fake-adapter")
    assert built[0].base_dir == base.resolve()
    url, _ = serve_app(app)
    body = {"model": "fake-adapter", "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(f"{url}/v1/chat/completions", json=body).status_code == 200
    assert fake_backend.requests[-1].adapter == "fake-adapter"


def test_uvicorn_runs_with_uvloop_and_httptools() -> None:
    from fastapi import FastAPI

    config = replica_module.server_config(FastAPI(), ServeConfig(host="0.0.0.0", port=9123))
    assert (config.loop, config.http, config.host, config.port) == ("uvloop", "httptools", "0.0.0.0", 9123)


def _cli() -> typer.Typer:
    from llmops.cli.replica import replica

    app = typer.Typer()
    app.command()(replica)
    return app


def test_cli_builds_the_configs_and_calls_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    import llmops.cli.replica as cli_module

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        cli_module,
        "run_replica",
        lambda spec, config, **kw: calls.append({"spec": spec, "config": config, **kw}),
    )
    args = ["--model", "chat@production", "--port", "8123", "--threads", "2", "--served-model-name", "chat",
            "--adapter", "a=lora@1", "--max-n", "4"]  # fmt: skip
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    (call,) = calls
    assert call["spec"] == "chat@production"
    assert (call["config"].port, call["config"].served_model_name, call["config"].max_n) == (8123, "chat", 4)
    assert call["engine"].threads == 2
    assert call["adapters"] == ["a=lora@1"]


def test_cli_bad_option_values_are_user_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    import llmops.cli.replica as cli_module

    monkeypatch.setattr(cli_module, "run_replica", lambda *a, **k: None)
    result = CliRunner().invoke(_cli(), ["--model", "m", "--port", "70000"])
    assert isinstance(result.exception, InvalidInput)
    assert result.exception.param == "port"
