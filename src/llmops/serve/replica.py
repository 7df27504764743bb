"""Run one replica: resolve the model, build the in-process engine, serve it with uvicorn.

uvicorn runs with uvloop and httptools. The engine is imported lazily so the serve package (and its
tests, over a fake backend) does not need it, and so ``--help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import uvicorn
from fastapi import FastAPI

from llmops.engine.config import EngineConfig
from llmops.engine.types import Backend
from llmops.errors import InvalidInput, LLMOpsError
from llmops.serve.app import build_app
from llmops.serve.config import ServeConfig
from llmops.serve.loading import ResolvedModel, resolve_model
from llmops.store.home import Home

GRACEFUL_SHUTDOWN_S = 30


def build_backend(
    model: ResolvedModel, engine: EngineConfig | None = None, draft: ResolvedModel | None = None
) -> Backend:
    """The transformers engine over ``model`` (blocking: loads the weights), with ``draft`` as the
    speculative-decoding draft model when ``engine.speculative`` names one; an encoder's
    ``EncoderBackend`` (classify and embed, no generation) when ``model`` is an encoder."""
    if model.is_encoder:
        return _encoder_backend(model, engine, draft)
    from llmops.engine.transformers_backend import TransformersBackend

    return TransformersBackend(
        model.base_dir,
        engine,
        adapters=dict(model.adapters) or None,
        draft_dir=draft.base_dir if draft is not None else None,
    )


def _encoder_backend(
    model: ResolvedModel, engine: EngineConfig | None, draft: ResolvedModel | None
) -> Backend:
    if draft is not None:
        raise InvalidInput(
            "speculative.draft: an encoder does not generate, so it takes no draft model",
            param="speculative.draft",
        )
    from llmops.engine.encoder_backend import EncoderBackend

    return EncoderBackend(model.base_dir, threads=(engine or EngineConfig()).threads)


def resolve_draft(
    engine: EngineConfig | None, open_store: Callable[[], Home] | None = None
) -> ResolvedModel | None:
    """The draft model ``engine.speculative.draft`` names (registry reference or local directory)."""
    if engine is None or engine.speculative is None:
        return None
    try:
        draft = resolve_model(engine.speculative.draft, open_store=open_store)
    except LLMOpsError as exc:
        raise InvalidInput(f"speculative.draft: {exc.message}", param="speculative.draft") from None
    if draft.is_encoder:
        raise InvalidInput(
            "speculative.draft: the draft is an encoder, which cannot generate; name a decoder",
            param="speculative.draft",
        )
    if draft.adapters:
        raise InvalidInput(
            "speculative.draft: the draft must be a full model, not a LoRA adapter",
            param="speculative.draft",
        )
    return draft


def server_config(app: FastAPI, config: ServeConfig) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level=config.log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


def prepare_replica(
    spec: str,
    config: ServeConfig,
    *,
    engine: EngineConfig | None = None,
    base: str | None = None,
    adapters: Sequence[str] = (),
    open_store: Callable[[], Home] | None = None,
) -> tuple[FastAPI, ServeConfig]:
    """Resolve, load and wrap the model in the app; returns the app and the effective config."""
    model = resolve_model(spec, base=base, adapters=adapters, open_store=open_store)
    backend = build_backend(model, engine, resolve_draft(engine, open_store))
    name = config.served_model_name or model.default_name
    effective = config.model_copy(
        update={"served_model_name": name, "default_adapter": model.default_adapter}
    )
    return build_app(backend, name, effective), effective


def run_replica(
    spec: str,
    config: ServeConfig,
    *,
    engine: EngineConfig | None = None,
    base: str | None = None,
    adapters: Sequence[str] = (),
    open_store: Callable[[], Home] | None = None,
) -> None:
    """Serve ``spec`` until interrupted (SIGINT/SIGTERM end it gracefully)."""
    app, effective = prepare_replica(
        spec, config, engine=engine, base=base, adapters=adapters, open_store=open_store
    )
    uvicorn.Server(server_config(app, effective)).run()
