"""``POST /v1/completions``: text completions of one or more prompts, as JSON or as a stream.

With several prompts and ``n`` choices each, choice ``p * n + j`` is the ``j``-th choice of prompt
``p``. A streamed completion's chunks have the completion's own shape (object ``text_completion``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from llmops.engine.types import TokenEvent
from llmops.serve.choices import ChoiceState, completion_logprobs, new_states, raise_if_failed, usage
from llmops.serve.protocol import CompletionRequest
from llmops.serve.responses import Completion, CompletionChoice, Usage
from llmops.serve.sampling import check_limits, completion_requests
from llmops.serve.service import ReplicaService
from llmops.serve.streaming import client_closed, collect, json_response, sse_response


@dataclass(frozen=True)
class CompletionChunks:
    id: str
    created: int
    model: str
    logprobs: bool

    def render(self, state: ChoiceState, event: TokenEvent) -> list[Completion]:
        with_logprobs = self.logprobs and event.logprob is not None
        if not (event.text or event.finish_reason is not None or with_logprobs):
            return []
        choice = CompletionChoice(
            index=state.index,
            text=event.text,
            logprobs=completion_logprobs([event], state.text_offset) if with_logprobs else None,
            finish_reason=event.finish_reason,
        )
        state.text_offset += len(event.text)
        return [Completion(id=self.id, created=self.created, model=self.model, choices=[choice])]

    def usage_chunk(self, totals: Usage) -> Completion:
        return Completion(id=self.id, created=self.created, model=self.model, choices=[], usage=totals)


async def completions(service: ReplicaService, body: CompletionRequest, request: Request) -> Response:
    adapter = service.adapter_for(body.model)
    service.require_generation()
    check_limits(body, service.config, body.logprobs or 0, prompts=len(body.prompt))
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    requests = await completion_requests(
        body, completion_id, adapter, service.config, service.backend.info(), service.backend.count_tokens
    )
    fanout = service.fanout(requests, request.receive)
    if not await fanout.start():
        return client_closed()
    states = new_states(len(requests), body.choices_per_prompt)
    created = int(time.time())
    logprobs = body.logprobs is not None
    if body.stream:
        chunks = CompletionChunks(completion_id, created, body.model, logprobs=logprobs)
        usage_chunk = chunks.usage_chunk if body.include_usage else None
        return sse_response(fanout, states, chunks.render, usage_chunk, service.record)
    if not await collect(fanout, states, service.record):
        return client_closed()
    raise_if_failed(states)
    choices = [
        CompletionChoice(
            index=state.index,
            text=state.text,
            logprobs=completion_logprobs(state.logprob_events, 0) if logprobs else None,
            finish_reason=state.finish_reason,
        )
        for state in states
    ]
    answer = Completion(
        id=completion_id, created=created, model=body.model, choices=choices, usage=usage(states)
    )
    return json_response(answer, fanout.timing_headers())
