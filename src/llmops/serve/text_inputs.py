"""The texts of an embeddings or classify request: how many, and each within the model's context.

An encoder reads a whole text in one pass, so a text longer than its context cannot be read as
given: it is refused (400 naming ``input[i]``), never cut silently. Token counts come from the
backend; a backend that cannot count (None) is not checked here.
"""

from __future__ import annotations

from llmops.errors import InvalidInput
from llmops.serve.sampling import count_tokens
from llmops.serve.service import ReplicaService


async def checked_token_counts(service: ReplicaService, texts: list[str]) -> list[int | None]:
    """Token counts of ``texts`` (None where the backend cannot tell); raises InvalidInput naming
    the field for no text, too many texts, or a text longer than the context (``input`` for one
    text, ``input[i]`` among several)."""
    if not texts:
        raise InvalidInput("input must hold at least one text", param="input")
    limit = service.config.max_embedding_inputs
    if len(texts) > limit:
        raise InvalidInput(f"at most {limit} inputs per request, got {len(texts)}", param="input")
    context = service.backend.info().max_model_len
    found: list[int | None] = []
    for index, text in enumerate(texts):
        tokens = await count_tokens(service.backend.count_tokens, text)
        if tokens is not None and tokens > context:
            where = "input" if len(texts) == 1 else f"input[{index}]"
            raise InvalidInput(
                f"{where} has {tokens} tokens; this model reads at most {context} tokens: shorten it",
                param=where,
                code="context_length_exceeded",
            )
        found.append(tokens)
    return found
