"""Request bodies of the OpenAI API subset a replica serves, validated with messages that name the field.

Types are strict as in JSON Schema (``"1"`` or ``true`` is not an integer, ``1.0`` is). Unknown fields are
ignored (clients send many optional ones) except two kinds, refused with 400:
fields that name a URL (``api_base``, ``base_url``, ``*_url``, ...) so no request can point the
server at another host, and features this server does not implement (tools, JSON mode, logit bias,
``suffix``, ``echo``) so a client never silently gets something other than what it asked for.
Limits that depend on the server's configuration (``n``, ``top_logprobs``) are checked by the
handlers against ``ServeConfig``; the fixed ones are here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from llmops.openapi_contract import case_insensitive, integral

MAX_STOP_SEQUENCES = 4
MAX_TOP_LOGPROBS = 20
_URL_FIELDS = frozenset({"api_base", "base_url", "api_url", "url", "uri", "endpoint", "proxy", "host"})
_URL_SUFFIXES = ("_url", "_uri", "_base", "_endpoint", "_host")
INT64 = 2**63


def field_error(param: str, message: str) -> PydanticCustomError:
    """A validation error of the whole body that still names its field (the error handler reads it)."""
    return PydanticCustomError("invalid_field", message, {"param": param})


def _refuse_url_fields(data: Any) -> Any:
    if isinstance(data, dict):
        for key in data:
            lowered = str(key).lower()
            if lowered in _URL_FIELDS or lowered.endswith(_URL_SUFFIXES):
                raise field_error(
                    str(key),
                    f"field {key!r} is not accepted: this server only generates with its own model "
                    "and never contacts another URL; remove the field",
                )
    return data


URL_FIELD_NAMES_PATTERN = (
    "^(?:" + "|".join(case_insensitive(name) for name in sorted(_URL_FIELDS)) + ")$"
    "|(?:" + "|".join(case_insensitive(suffix) for suffix in _URL_SUFFIXES) + ")$"
)
_NEUTRAL_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "null"},
        {"enum": [False, 0, "", "none"]},
        {"type": "array", "maxItems": 0},
        {"type": "object", "maxProperties": 0},
    ],
    "description": "Not supported: only an empty or neutral value is accepted.",
}
_TEXT_FORMAT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"const": "text"}},
}


# what _stream_options_need_stream enforces
_STREAM_OPTIONS_NEED_STREAM = {
    "if": {"required": ["stream_options"], "properties": {"stream_options": {"not": {"type": "null"}}}},
    "then": {"required": ["stream"], "properties": {"stream": {"const": True}}},
}
# what _top_logprobs_need_logprobs enforces
_TOP_LOGPROBS_NEED_LOGPROBS = {
    "if": {"required": ["top_logprobs"], "properties": {"top_logprobs": {"minimum": 1}}},
    "then": {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}},
}


def schema_rules(
    *unsupported: str, conditions: tuple[dict[str, Any], ...] = ()
) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` stating what the validators below enforce: no URL field names, the
    ``unsupported`` fields only with a neutral value, and the ``conditions`` (if/then) between fields."""

    def rules(schema: dict[str, Any]) -> None:
        schema["propertyNames"] = {"not": {"pattern": URL_FIELD_NAMES_PATTERN}}
        if conditions:
            schema["allOf"] = list(conditions)
        properties = schema.setdefault("properties", {})
        for name in unsupported:
            neutral = dict(_NEUTRAL_SCHEMA)
            if name == "response_format":
                neutral["anyOf"] = [*neutral["anyOf"], _TEXT_FORMAT_SCHEMA]
            properties[name] = neutral

    return rules


def _refuse_unsupported(data: Any, checks: dict[str, str]) -> None:
    """Raise for a field in ``checks`` that is set to something other than its neutral value."""
    if not isinstance(data, dict):
        return
    for key, why in checks.items():
        value = data.get(key)
        neutral = value in (None, False, "", [], {}, "none") or (
            key == "response_format" and isinstance(value, dict) and value.get("type") == "text"
        )
        if not neutral:
            raise field_error(key, f"{key} is not supported by this server: {why}")


def _stop_sequences(value: Any) -> Any:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("stop must be a string or a list of strings")
    if len(value) > MAX_STOP_SEQUENCES:
        raise ValueError(f"stop takes at most {MAX_STOP_SEQUENCES} sequences, got {len(value)}")
    if any(item == "" for item in value):
        raise ValueError("stop sequences must be non-empty strings")
    return tuple(value)


def _message_content(value: Any) -> Any:
    """A string, or a list of text parts joined into one string; other parts are refused."""
    if not isinstance(value, list):
        return value
    texts = []
    for part in value:
        if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
            raise ValueError(
                'content parts must be text parts like {"type": "text", "text": "..."}; '
                "images, audio and files are not supported"
            )
        texts.append(part["text"])
    return "".join(texts)


def _is_token_ids(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(not isinstance(t, bool) and isinstance(integral(t), int) and t >= 0 for t in value)
    )


def _token_ids(value: list[Any]) -> tuple[int, ...]:
    return tuple(integral(t) for t in value)


def _prompts(value: Any) -> Any:
    """Normalise ``prompt`` to a list of prompts, each a string or a tuple of token ids."""
    shape_error = (
        "prompt must be a string, a list of strings, a list of token ids (non-negative integers) "
        "or a list of such lists"
    )
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise ValueError(shape_error)
    if _is_token_ids(value):
        return [_token_ids(value)]
    if all(isinstance(item, str) for item in value):
        return value
    if all(_is_token_ids(item) for item in value):
        return [_token_ids(item) for item in value]
    raise ValueError(shape_error)


def _embedding_inputs(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise ValueError("input must be a string or a list of strings (token-id inputs are not supported)")


def _classify_inputs(value: Any) -> Any:
    """One text or a non-empty list of texts, none of them blank (an encoder has nothing to read)."""
    texts = _embedding_inputs(value)
    if not texts:
        raise field_error("input", "input must hold at least one text")
    for index, text in enumerate(texts):
        if not text.strip():
            where = "input" if isinstance(value, str) else f"input[{index}]"
            raise field_error(where, f"{where} is empty: give the text to classify")
    return texts


CHAT_UNSUPPORTED = {
    "tools": "tool calling is not implemented",
    "functions": "function calling is not implemented",
    "tool_choice": "tool calling is not implemented",
    "response_format": "only plain text output is implemented",
    "logit_bias": "logit bias is not implemented",
    "audio": "only text is implemented",
}
COMPLETION_UNSUPPORTED = {
    "suffix": "insertion is not implemented",
    "echo": "echoing the prompt is not implemented",
    "logit_bias": "logit bias is not implemented",
}
_STOP_SCHEMA = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "maxItems": MAX_STOP_SEQUENCES, "items": {"type": "string", "minLength": 1}},
        {"type": "null"},
    ]
}
StopSequences = Annotated[tuple[str, ...], BeforeValidator(_stop_sequences), WithJsonSchema(_STOP_SCHEMA)]
MessageText = Annotated[str, BeforeValidator(_message_content)]
_TOKEN_IDS_SCHEMA = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}
_PROMPTS_SCHEMA = {
    "anyOf": [
        {"type": "string"},
        {"type": "array", "minItems": 1, "items": {"type": "string"}},
        _TOKEN_IDS_SCHEMA,
        {"type": "array", "minItems": 1, "items": _TOKEN_IDS_SCHEMA},
    ]
}
Prompts = Annotated[list[str | tuple[int, ...]], BeforeValidator(_prompts), WithJsonSchema(_PROMPTS_SCHEMA)]
_EMBEDDING_INPUTS_SCHEMA = {
    "anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": "string"}}]
}
EmbeddingInputs = Annotated[
    list[str], BeforeValidator(_embedding_inputs), WithJsonSchema(_EMBEDDING_INPUTS_SCHEMA)
]

_TEXT = {"type": "string", "pattern": r"\S"}
_CLASSIFY_INPUTS_SCHEMA = {"anyOf": [_TEXT, {"type": "array", "minItems": 1, "items": _TEXT}]}
ClassifyInputs = Annotated[
    list[str], BeforeValidator(_classify_inputs), WithJsonSchema(_CLASSIFY_INPUTS_SCHEMA)
]

Probability = Annotated[float, Field(allow_inf_nan=False)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    include_usage: bool = Field(default=False, description="Send a last chunk with token usage.")


class ChatMessageIn(BaseModel):
    """One conversation turn; ``developer`` is treated as ``system``."""

    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: MessageText
    name: str | None = Field(default=None, max_length=256)


class SamplingFields(BaseModel):
    """Fields shared by chat and text completions (OpenAI's names; extensions are marked)."""

    model_config = ConfigDict(
        extra="ignore",
        strict=True,
        json_schema_extra=schema_rules(conditions=(_STREAM_OPTIONS_NEED_STREAM,)),
    )

    model: str = Field(min_length=1, max_length=256, description="A served model or adapter name.")
    max_tokens: int | None = Field(default=None, ge=1, description="Most tokens to generate.")
    temperature: Probability | None = Field(default=None, ge=0, le=2, description="0 is greedy.")
    top_p: Probability | None = Field(default=None, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int | None = Field(default=None, ge=-1, description="Extension: top-k; 0 or -1 disables.")
    n: int | None = Field(default=None, ge=1, description="How many choices to generate.")
    stream: bool | None = Field(default=None, description="Answer as server-sent events.")
    stream_options: StreamOptions | None = None
    stop: StopSequences = Field(default=(), description="Up to 4 sequences that end generation.")
    seed: int | None = Field(
        default=None,
        description="Seed for reproducible sampling; any integer, taken modulo 2**64 into int64.",
    )
    presence_penalty: Probability | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: Probability | None = Field(default=None, ge=-2, le=2)
    repetition_penalty: Probability | None = Field(
        default=None, gt=0, le=10, description="Extension: multiplicative penalty, 1 is none."
    )
    ignore_eos: bool | None = Field(default=None, description="Extension: keep going past end-of-text.")
    user: str | None = Field(default=None, max_length=256)

    @model_validator(mode="before")
    @classmethod
    def _no_url_fields(cls, data: Any) -> Any:
        return _refuse_url_fields(data)

    @field_validator("max_tokens", "top_k", "n", "seed", mode="before")
    @classmethod
    def _integral_numbers(cls, value: Any) -> Any:
        return integral(value)

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> SamplingFields:
        if self.stream_options is not None and not self.stream:
            raise field_error("stream_options", "stream_options is only allowed with stream: true")
        return self

    @property
    def choices_per_prompt(self) -> int:
        return self.n or 1

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(SamplingFields):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(
        extra="ignore",
        strict=True,
        json_schema_extra=schema_rules(
            *CHAT_UNSUPPORTED, conditions=(_STREAM_OPTIONS_NEED_STREAM, _TOP_LOGPROBS_NEED_LOGPROBS)
        ),
    )

    messages: list[ChatMessageIn] = Field(min_length=1, description="The conversation so far.")
    max_completion_tokens: int | None = Field(
        default=None, ge=1, description="Most tokens to generate (wins over max_tokens)."
    )
    logprobs: bool | None = Field(default=None, description="Return the log probability of each token.")
    top_logprobs: int | None = Field(
        default=None, ge=0, le=MAX_TOP_LOGPROBS, description="Alternatives per token (needs logprobs)."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_unsupported(cls, data: Any) -> Any:
        _refuse_unsupported(data, CHAT_UNSUPPORTED)
        return data

    @field_validator("max_completion_tokens", "top_logprobs", mode="before")
    @classmethod
    def _integral_chat_numbers(cls, value: Any) -> Any:
        return integral(value)

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise field_error("top_logprobs", "top_logprobs needs logprobs: true")
        return self

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(SamplingFields):
    """``POST /v1/completions``: one or more prompts, each a string or a list of token ids."""

    model_config = ConfigDict(
        extra="ignore",
        strict=True,
        json_schema_extra=schema_rules(*COMPLETION_UNSUPPORTED, conditions=(_STREAM_OPTIONS_NEED_STREAM,)),
    )

    prompt: Prompts = Field(description="A string, a list of token ids, or a list of either.")
    logprobs: int | None = Field(
        default=None, ge=0, le=MAX_TOP_LOGPROBS, description="Return this many alternatives per token."
    )
    best_of: int | None = Field(default=None, ge=1, description="Only best_of == n is supported.")

    @model_validator(mode="before")
    @classmethod
    def _no_unsupported(cls, data: Any) -> Any:
        _refuse_unsupported(data, COMPLETION_UNSUPPORTED)
        return data

    @field_validator("logprobs", "best_of", mode="before")
    @classmethod
    def _integral_completion_numbers(cls, value: Any) -> Any:
        return integral(value)

    @model_validator(mode="after")
    def _best_of_is_n(self) -> CompletionRequest:
        if self.best_of is not None and self.best_of != self.choices_per_prompt:
            raise field_error("best_of", "best_of other than n is not supported; leave it unset")
        return self


class _TextInputsRequest(BaseModel):
    """What the requests over plain text inputs (embeddings, classify) share: strict JSON types,
    unknown fields ignored as OpenAI does, and no field that would make a server fetch a URL."""

    model_config = ConfigDict(extra="ignore", strict=True, json_schema_extra=schema_rules())

    @model_validator(mode="before")
    @classmethod
    def _no_url_fields(cls, data: Any) -> Any:
        return _refuse_url_fields(data)


class EmbeddingRequest(_TextInputsRequest):
    """``POST /v1/embeddings`` over text inputs."""

    model: str = Field(min_length=1, max_length=256)
    input: EmbeddingInputs = Field(description="A text or a list of texts.")
    encoding_format: Literal["float", "base64"] | None = Field(
        default=None, description="float (default) or base64 of little-endian float32."
    )
    dimensions: None = Field(default=None, description="Not supported: embeddings have the model's width.")
    user: str | None = Field(default=None, max_length=256)

    @property
    def texts(self) -> list[str]:
        return self.input


class ClassifyRequest(_TextInputsRequest):
    """``POST /v1/classify``: the labels of one or more texts from an encoder classifier."""

    model: str = Field(min_length=1, max_length=256)
    input: ClassifyInputs = Field(description="A text or a list of texts, none blank.")
    user: str | None = Field(default=None, max_length=256)

    @property
    def texts(self) -> list[str]:
        return self.input
