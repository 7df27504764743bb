"""Per-request output processing: engine step outputs → ``TokenEvent``s with text and stop strings.

Text that could be the beginning of a stop string is held back until the next tokens show it is
not; when a stop string appears, the text before it is emitted and the request ends with finish
reason "stop" (the stop string itself is not part of the output, as in the OpenAI API). When the
engine ends a request, the detokeniser's held-back text is emitted too (through the stop strings),
so the reply is the decoded output ids, exactly as evaluation decodes them.
"""

from __future__ import annotations

from typing import Any

from llmops.engine.detokenizer import IncrementalDetokenizer
from llmops.engine.llm_engine import StepOutput
from llmops.engine.types import FinishReason, SamplingParams, TokenEvent, TopLogprob


class StopStringMatcher:
    """Finds stop strings in a stream of text deltas; returns what is safe to emit."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._held = ""

    def feed(self, delta: str) -> tuple[str, bool]:
        """Add ``delta``; return (text to emit now, whether a stop string was found)."""
        if not self.stops:
            return delta, False
        text = self._held + delta
        hits = [i for i in (text.find(stop) for stop in self.stops) if i >= 0]
        if hits:
            self._held = ""
            return text[: min(hits)], True
        keep = self._longest_stop_prefix_suffix(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held

    def _longest_stop_prefix_suffix(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of some stop string."""
        best = 0
        for stop in self.stops:
            for length in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:length]):
                    best = length
                    break
        return best


class OutputProcessor:
    """Turns one request's ``StepOutput``s into ``TokenEvent``s."""

    def __init__(
        self, request_id: str, tokenizer: Any, prompt_token_ids: list[int], sampling: SamplingParams
    ):
        self.request_id = request_id
        self.tokenizer = tokenizer
        self.detokenizer = IncrementalDetokenizer(tokenizer, prompt_token_ids)
        self.stop = StopStringMatcher(sampling.stop)
        self.num_prompt_tokens = len(prompt_token_ids)
        self.num_output_tokens = 0
        self.num_cached_tokens = 0
        self.finished = False

    def process(self, out: StepOutput) -> tuple[TokenEvent, bool]:
        """Event for ``out`` and whether it ends the request by a stop string (engine must stop it)."""
        self.num_output_tokens = out.num_output_tokens
        self.num_cached_tokens = out.num_cached_tokens
        text, stopped = "", False
        if out.token_id is not None:
            text, stopped = self.stop.feed(self.detokenizer.add(out.token_id))
        reason: FinishReason | None = "stop" if stopped else out.finish_reason
        if reason is not None and not stopped:
            tail, hit = self.stop.feed(self.detokenizer.flush())
            text += tail if hit else tail + self.stop.flush()
            reason = "stop" if hit else reason
        self.finished = reason is not None
        event = TokenEvent(
            request_id=self.request_id,
            token_id=out.token_id,
            text=text,
            prompt_tokens=out.num_prompt_tokens,
            completion_tokens=out.num_output_tokens,
            logprob=out.logprob,
            top_logprobs=tuple(
                TopLogprob(token_id, self._token_text(token_id), logprob)
                for token_id, logprob in out.top_logprobs
            ),
            finish_reason=reason,
            error=out.error,
            cached_prompt_tokens=out.num_cached_tokens,
        )
        return event, stopped

    def final(self, reason: FinishReason, error: str | None = None) -> TokenEvent:
        """The closing event when the request ends without a new token (abort, deadline, error)."""
        self.finished = True
        return TokenEvent(
            request_id=self.request_id,
            token_id=None,
            text="" if reason != "stop" else self.stop.flush(),
            prompt_tokens=self.num_prompt_tokens,
            completion_tokens=self.num_output_tokens,
            finish_reason=reason,
            error=error,
            cached_prompt_tokens=self.num_cached_tokens,
        )

    def _token_text(self, token_id: int) -> str:
        return str(self.tokenizer.decode([token_id]))
