"""A model's input format: how a prompt becomes token ids, and which tokens end a reply.

The trainer records it next to the weights (``input_format.json``) from the recipe's row schema,
and every path that turns text into a model's input goes through ``PromptEncoder``: the trainer's
batching (the prompt side of each example), the evaluator (``evals.generation``) and the engine
behind a replica (``/v1/completions`` and ``/v1/chat/completions``). So a model is served exactly
as it was trained and evaluated: same tokenizer, same bos, same stop tokens.

- A raw prompt encodes as ``bos + tokens(text)`` when ``add_bos`` (once: a text that already starts
  with the bos token gets no second one); special-token strings in the text become their ids.
- A conversation, by ``chat``: ``template`` renders the tokenizer's chat template (which writes its
  own bos); ``prompt`` (a model trained on prompt/completion text, which never saw a template)
  takes exactly one user message and encodes its content as the raw prompt; ``none`` (a model
  pretrained on raw text) takes no conversations.
- Generation stops at the ``stop_tokens`` (the eos every training example ends with) and at the eos
  ids the model's own configs name.

A directory without the file (an imported model, or one trained before the file existed) gets the
trainer's convention: bos when the tokenizer has one, the chat template when it has one.

Imports nothing heavy: the tokenizer (a transformers tokenizer) is passed in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmops.errors import InvalidInput

INPUT_FORMAT_FILE = "input_format.json"
COMPLETIONS_ROUTE, CHAT_ROUTE = "/v1/completions", "/v1/chat/completions"
ChatMode = Literal["template", "prompt", "none"]
TrainedOn = Literal["text", "prompt_completion", "chat"]
_CHAT_MODE_OF_SCHEMA: dict[str, ChatMode] = {
    "text": "none",
    "prompt_completion": "prompt",
    "chat": "template",
}


class Message(Protocol):
    """A chat message of any layer (engine, evals, training rows): a role and its text."""

    @property
    def role(self) -> str: ...

    @property
    def content(self) -> str: ...


class InputFormat(BaseModel):
    """How a model expects its input; written by the trainer, read by the evaluator and the engine."""

    model_config = ConfigDict(frozen=True)

    trained_on: TrainedOn | None = Field(
        default=None, description="Row schema of the training recipe; null when not recorded."
    )
    add_bos: bool = Field(description="A raw prompt starts with the bos token.")
    bos_token: str | None = Field(default=None, description="The bos token's text.")
    chat: ChatMode = Field(
        description="template: the tokenizer's chat template; prompt: one user message is the raw "
        "prompt; none: no conversations."
    )
    stop_tokens: tuple[str, ...] = Field(
        default=(), description="Tokens that end a reply (the eos training appended to every example)."
    )

    @property
    def routes(self) -> tuple[str, ...]:
        """The OpenAI routes that can serve this model."""
        return (COMPLETIONS_ROUTE,) if self.chat == "none" else (COMPLETIONS_ROUTE, CHAT_ROUTE)

    def describe(self) -> str:
        """One line for people: what the model was trained on and how each route encodes."""
        trained = f"trained on {self.trained_on} rows" if self.trained_on else "training format not recorded"
        bos = f"prompt = {self.bos_token} + text" if self.add_bos else "prompt = text (no bos)"
        chat = {
            "template": "chat: the tokenizer's chat template",
            "prompt": "chat: one user message, encoded as the raw prompt",
            "none": f"chat: refused (use {COMPLETIONS_ROUTE})",
        }[self.chat]
        stops = ", ".join(self.stop_tokens) or "the model's eos"
        return f"{trained}; {bos}; {chat}; stops at {stops}"


def _bos_token(tokenizer: Any) -> str | None:
    return None if tokenizer.bos_token_id is None else str(tokenizer.bos_token)


def _stop_tokens(tokenizer: Any) -> tuple[str, ...]:
    return () if tokenizer.eos_token_id is None else (str(tokenizer.eos_token),)


def format_for_schema(schema: TrainedOn, tokenizer: Any) -> InputFormat:
    """The format a model trained on ``schema`` rows with ``tokenizer`` expects (what batching does)."""
    return InputFormat(
        trained_on=schema,
        add_bos=tokenizer.bos_token_id is not None,
        bos_token=_bos_token(tokenizer),
        chat=_CHAT_MODE_OF_SCHEMA[schema],
        stop_tokens=_stop_tokens(tokenizer),
    )


def infer_input_format(tokenizer: Any) -> InputFormat:
    """The trainer's convention, for a directory that records no format."""
    return InputFormat(
        add_bos=tokenizer.bos_token_id is not None,
        bos_token=_bos_token(tokenizer),
        chat="template" if getattr(tokenizer, "chat_template", None) else "none",
        stop_tokens=_stop_tokens(tokenizer),
    )


def write_input_format(fmt: InputFormat, directory: Path) -> Path:
    path = Path(directory) / INPUT_FORMAT_FILE
    path.write_text(fmt.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def read_input_format(directory: Path) -> InputFormat | None:
    """The format recorded in a model directory; None when it records none."""
    path = Path(directory) / INPUT_FORMAT_FILE
    if not path.is_file():
        return None
    try:
        return InputFormat.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, ValidationError) as exc:
        raise InvalidInput(
            f"{INPUT_FORMAT_FILE} in {Path(directory).name} is not a valid input format: {exc}",
            param="model",
        ) from None


def text_token_ids(tokenizer: Any, text: str) -> list[int]:
    """Tokens of ``text`` with no special tokens added (special-token strings still map to their ids)."""
    return [int(t) for t in tokenizer(text, add_special_tokens=False)["input_ids"]]


def prompt_token_ids(tokenizer: Any, text: str, *, add_bos: bool) -> list[int]:
    """A raw prompt: ``bos + tokens`` when ``add_bos``, with never two bos tokens in a row."""
    ids = text_token_ids(tokenizer, text)
    bos = tokenizer.bos_token_id
    if add_bos and bos is not None and (not ids or ids[0] != bos):
        return [int(bos), *ids]
    return ids


def render_chat(tokenizer: Any, messages: Iterable[Message], *, add_generation_prompt: bool) -> str:
    """The tokenizer's chat template over ``messages``; a template that rejects them is InvalidInput."""
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidInput("the tokenizer has no chat template", param="messages")
    plain = [{"role": m.role, "content": m.content} for m in messages]
    try:
        text = tokenizer.apply_chat_template(
            plain, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except Exception as exc:  # jinja raises on roles or orders a template does not accept
        raise InvalidInput(f"the chat template rejected these messages: {exc}", param="messages") from exc
    return str(text)


@dataclass(frozen=True)
class PromptEncoder:
    """One model's tokenizer and input format: the one way its prompts become token ids."""

    tokenizer: Any
    format: InputFormat

    @classmethod
    def for_model_dir(cls, directory: Path, tokenizer: Any) -> PromptEncoder:
        """The encoder of a model directory: its recorded format, or the trainer's convention."""
        return cls(tokenizer, read_input_format(directory) or infer_input_format(tokenizer))

    def encode_prompt(self, text: str) -> list[int]:
        return prompt_token_ids(self.tokenizer, text, add_bos=self.format.add_bos)

    def encode_chat(self, messages: Sequence[Message]) -> list[int]:
        """A conversation, as the recorded format says; one the model cannot take is InvalidInput."""
        mode = self.format.chat
        if mode == "template":
            # The template writes its own special tokens (bos and the like).
            rendered = render_chat(self.tokenizer, messages, add_generation_prompt=True)
            return text_token_ids(self.tokenizer, rendered)
        if mode == "prompt":
            if len(messages) != 1 or messages[0].role != "user":
                raise InvalidInput(
                    "this model was trained on raw prompt/completion text, not conversations: send "
                    "exactly one user message (its content is the prompt), or the text to "
                    f"{COMPLETIONS_ROUTE}",
                    param="messages",
                    code="chat_not_supported",
                )
            return self.encode_prompt(messages[0].content)
        raise InvalidInput(
            "this model was trained on raw text and takes no conversations: send a prompt to "
            f"{COMPLETIONS_ROUTE}",
            param="messages",
            code="chat_not_supported",
        )

    def stop_token_ids(self, *configs: Any) -> frozenset[int]:
        """Ids that end a reply: the format's stop tokens and the eos ids of ``configs`` (the model's
        config and generation config, which may name several) and of the tokenizer."""
        unknown = getattr(self.tokenizer, "unk_token_id", None)
        found: set[int] = set()
        for token in self.format.stop_tokens:
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if token_id is not None and token_id != unknown:
                found.add(int(token_id))
        for source in (*configs, self.tokenizer):
            value = getattr(source, "eos_token_id", None)
            if isinstance(value, int):
                found.add(value)
            elif isinstance(value, list | tuple):
                found.update(int(v) for v in value)
        return frozenset(found)
