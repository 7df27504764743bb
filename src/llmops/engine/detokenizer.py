"""Incremental detokenisation: the text delta each new token adds.

Decoding token by token breaks multi-byte characters and word-boundary spacing, so (as vLLM does)
each step decodes a short window of ids twice, up to the last emitted token and up to the new one,
and emits the difference once it no longer ends in an incomplete character (U+FFFD). When the
request ends, ``flush`` emits what is still held back (incomplete characters decode to U+FFFD, as
decoding all output ids at once does), so the streamed text always equals the decoded output.
"""

from __future__ import annotations

from typing import Any

# Tokens of context before the read offset; enough for any tokenizer's merge/spacing rules.
_CONTEXT_TOKENS = 5


class IncrementalDetokenizer:
    """Text deltas of a growing list of output ids (the prompt is context only)."""

    def __init__(self, tokenizer: Any, prompt_token_ids: list[int], skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.token_ids = list(prompt_token_ids[-_CONTEXT_TOKENS:])
        self.prefix_offset = 0
        self.read_offset = len(self.token_ids)

    def add(self, token_id: int) -> str:
        """Append one id; return the newly complete text (may be empty)."""
        self.token_ids.append(token_id)
        prefix = self._decode(self.token_ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.token_ids[self.prefix_offset :])
        if len(full) <= len(prefix) or full.endswith("\ufffd"):
            return ""
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.token_ids)
        # Keep the window short: ids before prefix_offset never matter again.
        if self.prefix_offset > 4 * _CONTEXT_TOKENS:
            drop = self.prefix_offset - _CONTEXT_TOKENS
            self.token_ids = self.token_ids[drop:]
            self.prefix_offset -= drop
            self.read_offset -= drop
        return full[len(prefix) :]

    def flush(self) -> str:
        """The text of the ids not emitted yet, even if it ends in an incomplete character."""
        prefix = self._decode(self.token_ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.token_ids[self.prefix_offset :])
        self.prefix_offset = self.read_offset = len(self.token_ids)
        return full[len(prefix) :] if len(full) > len(prefix) else ""

    def _decode(self, ids: list[int]) -> str:
        if not ids:
            return ""
        return str(self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens))
