"""`llmops replica`: serve one model (registry reference or local directory) over the OpenAI API."""

from __future__ import annotations

import json
import sys
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from llmops.cli.context import console, home_of
from llmops.engine.config import EngineConfig
from llmops.engine.openmp_runtime import loaded_runtime, reexec_with_preferred_runtime
from llmops.errors import InvalidInput
from llmops.serve.config import ServeConfig
from llmops.serve.error_responses import validation_error
from llmops.serve.replica import run_replica

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def replica(
    ctx: typer.Context,
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="Registry reference (name, name@3, name@production) or a local model directory.",
    ),
    port: int = typer.Option(8000, "--port", "-p", help="TCP port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0 for all)."),
    threads: int | None = typer.Option(
        None, "--threads", help="torch threads of the engine (default: up to 8)."
    ),
    served_model_name: str | None = typer.Option(
        None,
        "--served-model-name",
        help="Name clients use in `model` (default: the reference or directory name).",
    ),
    base: str | None = typer.Option(
        None, "--base", help="Base model of a local PEFT adapter (reference or path)."
    ),
    adapter: list[str] = typer.Option(
        [], "--adapter", help="Extra LoRA adapter to load, NAME=REF_OR_PATH (repeatable)."
    ),
    max_model_len: int | None = typer.Option(
        None, "--max-model-len", help="Context length (default: the model's)."
    ),
    kv_cache_mb: int | None = typer.Option(
        None, "--kv-cache-mb", help="Memory budget of the KV cache in MiB."
    ),
    max_num_seqs: int | None = typer.Option(None, "--max-num-seqs", help="Most sequences in one batch."),
    device: str | None = typer.Option(
        None,
        "--device",
        help="Where the engine runs: auto (cuda when torch sees a GPU, else cpu), cpu, cuda or cuda:N.",
    ),
    dtype: str | None = typer.Option(
        None,
        "--dtype",
        help="Dtype of weights and KV cache: auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, "
        "float16.",
    ),
    max_n: int = typer.Option(8, "--max-n", help="Most choices (`n`) per request."),
    max_body_bytes: int = typer.Option(4 * 1024 * 1024, "--max-body-bytes", help="Largest request body."),
    request_timeout: float | None = typer.Option(
        None, "--request-timeout", help="Seconds a generation may run before it is aborted."
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
    engine_json: str | None = typer.Option(
        None,
        "--engine-json",
        help='More engine settings as a JSON object of EngineConfig fields ({"block_size": 32}); '
        "the flags above win.",
    ),
) -> None:
    """Serve MODEL over the OpenAI API (chat, completions, embeddings, models; classify for an encoder
    classifier) with /metrics and probes."""
    serve_config = _config(ServeConfig,
        host=host, port=port, served_model_name=served_model_name, max_n=max_n, max_body_bytes=max_body_bytes,
        request_timeout_s=request_timeout, log_level=log_level,
    )  # fmt: skip
    engine_options = {
        "threads": threads, "max_model_len": max_model_len, "kv_cache_memory_mb": kv_cache_mb,
        "max_num_seqs": max_num_seqs, "device": device, "dtype": dtype,
    }  # fmt: skip
    extra = _engine_json(engine_json)
    engine = _config(EngineConfig, **{**extra, **{k: v for k, v in engine_options.items() if v is not None}})
    placement = engine.placement()  # a device this machine lacks is refused before the model loads
    if placement.device.type == "cpu":
        reexec_with_preferred_runtime(sys.argv)  # once, before any weights load
    runtime = f", OpenMP {loaded_runtime()}" if placement.device.type == "cpu" else ""
    console.print(f"serving {model} on http://{host}:{port}/v1 ({placement.describe()}{runtime})")
    run_replica(
        model, serve_config, engine=engine, base=base, adapters=adapter, open_store=lambda: home_of(ctx)
    )


def _engine_json(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"--engine-json is not valid JSON: {exc}", param="engine_json") from None
    if not isinstance(value, dict):
        raise InvalidInput("--engine-json must be a JSON object of EngineConfig fields", param="engine_json")
    return value


def _config(model: type[ConfigT], **values: Any) -> ConfigT:
    """Build a config model; a bad option value is a one-line user error, not a traceback."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from exc
