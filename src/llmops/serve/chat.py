"""``POST /v1/chat/completions``: fan the choices out, then answer as JSON or as a stream.

A streamed choice starts with a chunk carrying ``role: assistant`` and empty content, then one chunk
per event with text (or log probabilities, or the finish reason). With
``stream_options.include_usage`` a last chunk with no choices carries the usage.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from llmops.engine.types import TokenEvent
from llmops.serve.choices import ChoiceState, chat_logprobs, new_states, raise_if_failed, usage
from llmops.serve.protocol import ChatCompletionRequest
from llmops.serve.responses import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    Usage,
)
from llmops.serve.sampling import chat_requests, check_limits
from llmops.serve.service import ReplicaService
from llmops.serve.streaming import client_closed, collect, json_response, sse_response


@dataclass(frozen=True)
class ChatChunks:
    """Renders a streamed chat completion's chunks; every chunk repeats id, created and model."""

    id: str
    created: int
    model: str
    logprobs: bool

    def _chunk(self, choice: ChatChunkChoice) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=[choice])

    def render(self, state: ChoiceState, event: TokenEvent) -> list[ChatCompletionChunk]:
        chunks = []
        if not state.started:
            state.started = True
            chunks.append(
                self._chunk(ChatChunkChoice(index=state.index, delta=ChatDelta(role="assistant", content="")))
            )
        with_logprobs = self.logprobs and event.logprob is not None
        if event.text or event.finish_reason is not None or with_logprobs:
            choice = ChatChunkChoice(
                index=state.index,
                delta=ChatDelta(content=event.text or None),
                logprobs=chat_logprobs([event]) if with_logprobs else None,
                finish_reason=event.finish_reason,
            )
            chunks.append(self._chunk(choice))
        return chunks

    def usage_chunk(self, totals: Usage) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=[], usage=totals
        )


async def chat_completions(
    service: ReplicaService, body: ChatCompletionRequest, request: Request
) -> Response:
    adapter = service.adapter_for(body.model)
    service.require_generation()
    check_limits(body, service.config, body.top_logprobs or 0)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    requests = await chat_requests(
        body, completion_id, adapter, service.config, service.backend.info(), service.backend.count_tokens
    )
    fanout = service.fanout(requests, request.receive)
    if not await fanout.start():
        return client_closed()
    states = new_states(len(requests), len(requests))
    created = int(time.time())
    if body.stream:
        chunks = ChatChunks(completion_id, created, body.model, logprobs=bool(body.logprobs))
        usage_chunk = chunks.usage_chunk if body.include_usage else None
        return sse_response(fanout, states, chunks.render, usage_chunk, service.record)
    if not await collect(fanout, states, service.record):
        return client_closed()
    raise_if_failed(states)
    choices = [
        ChatChoice(
            index=state.index,
            message=AssistantMessage(content=state.text),
            logprobs=chat_logprobs(state.logprob_events) if body.logprobs else None,
            finish_reason=state.finish_reason,
        )
        for state in states
    ]
    answer = ChatCompletion(
        id=completion_id, created=created, model=body.model, choices=choices, usage=usage(states)
    )
    return json_response(answer, fanout.timing_headers())
