"""``ServeConfig``: how one replica serves HTTP (address, limits, defaults), one typed model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ServeConfig(BaseModel):
    """Settings of one replica's HTTP server; the CLI builds this from its options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port (0 picks a free one).")
    served_model_name: str | None = Field(
        default=None,
        description="Name clients put in `model`; default: the model reference or directory name.",
    )
    default_adapter: str | None = Field(
        default=None,
        description="Adapter applied to requests for the served model name (when serving an adapter).",
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest request body accepted; larger gets 413."
    )
    max_n: int = Field(default=8, ge=1, le=128, description="Most choices (`n`) one request may ask for.")
    max_top_logprobs: int = Field(
        default=20, ge=0, le=20, description="Most alternatives per token (`top_logprobs`, `logprobs`)."
    )
    max_prompts_per_request: int = Field(
        default=16, ge=1, description="Most prompts in one batched /v1/completions request."
    )
    max_embedding_inputs: int = Field(
        default=256, ge=1, description="Most inputs in one /v1/embeddings or /v1/classify request."
    )
    default_max_tokens: int = Field(
        default=256,
        ge=1,
        description="Completion length when a chat request sets no max_tokens (capped to the context).",
    )
    request_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Generation deadline per request; past it the engine stops with finish reason abort.",
    )
    log_level: str = Field(default="info", description="uvicorn log level.")
