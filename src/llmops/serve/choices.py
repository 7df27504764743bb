"""What one choice has produced so far, and the usage and log probabilities built from it.

``ChoiceState`` accumulates a choice's events (text deltas, counts, finish reason, the events that
carry log probabilities); ``usage`` sums choices the way OpenAI does: each prompt's tokens once,
every choice's completion tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from llmops.engine.types import TokenEvent
from llmops.errors import LLMOpsError
from llmops.serve.responses import (
    ChoiceLogprobs,
    CompletionLogprobs,
    PromptTokensDetails,
    TokenLogprob,
    TopLogprobOut,
    Usage,
)


@dataclass
class ChoiceState:
    index: int
    prompt_index: int = 0
    parts: list[str] = field(default_factory=list)
    logprob_events: list[TokenEvent] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None
    text_offset: int = 0  # characters streamed so far (completions' text_offset)
    started: bool = False  # the first chunk of a streamed chat choice carries the role

    def add(self, event: TokenEvent) -> None:
        self.parts.append(event.text)
        if event.logprob is not None:
            self.logprob_events.append(event)
        self.prompt_tokens = event.prompt_tokens
        self.completion_tokens = event.completion_tokens
        self.cached_tokens = event.cached_prompt_tokens
        if event.finish_reason is not None:
            self.finish_reason = event.finish_reason
            self.error = event.error

    @property
    def text(self) -> str:
        return "".join(self.parts)


def new_states(count: int, per_prompt: int) -> list[ChoiceState]:
    return [ChoiceState(index=i, prompt_index=i // per_prompt) for i in range(count)]


def usage(states: Sequence[ChoiceState]) -> Usage:
    prompts: dict[int, tuple[int, int]] = {}
    for state in states:
        tokens, cached = prompts.get(state.prompt_index, (0, 0))
        prompts[state.prompt_index] = (max(tokens, state.prompt_tokens), max(cached, state.cached_tokens))
    prompt_tokens = sum(tokens for tokens, _ in prompts.values())
    completion_tokens = sum(state.completion_tokens for state in states)
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=sum(c for _, c in prompts.values())),
    )


def raise_if_failed(states: Sequence[ChoiceState]) -> None:
    """A choice the engine ended with ``error`` fails the whole (non-streamed) answer."""
    for state in states:
        if state.finish_reason == "error":
            raise generation_failed()


def generation_failed() -> LLMOpsError:
    # The engine's own message may name files or internals: it goes to the log, not the client.
    return LLMOpsError("generation failed on this replica; retry, or report it with the x-request-id")


def token_text(event: TokenEvent) -> str:
    """The sampled token's text: its entry among the alternatives, else the decoded delta."""
    for top in event.top_logprobs:
        if top.token_id == event.token_id:
            return top.token
    return event.text


def chat_logprobs(events: Sequence[TokenEvent]) -> ChoiceLogprobs:
    content = []
    for event in events:
        token = token_text(event)
        alternatives = [
            TopLogprobOut(token=t.token, logprob=t.logprob, bytes=list(t.token.encode()))
            for t in event.top_logprobs
        ]
        content.append(
            TokenLogprob(
                token=token,
                logprob=event.logprob if event.logprob is not None else 0.0,
                bytes=list(token.encode()),
                top_logprobs=alternatives,
            )
        )
    return ChoiceLogprobs(content=content)


def completion_logprobs(events: Sequence[TokenEvent], offset: int) -> CompletionLogprobs:
    """Log probabilities in the legacy completions shape; ``offset`` is where ``events`` start."""
    out = CompletionLogprobs()
    for event in events:
        token = token_text(event)
        out.tokens.append(token)
        out.token_logprobs.append(event.logprob if event.logprob is not None else 0.0)
        out.top_logprobs.append({t.token: t.logprob for t in event.top_logprobs})
        out.text_offset.append(offset)
        offset += len(event.text)
    return out
