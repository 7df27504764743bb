"""``POST /v1/embeddings``: the backend's mean-pooled embeddings, as floats or base64 float32.

OpenAI's Python client asks for base64 unless told otherwise and decodes it itself, so both
encodings are served.
"""

from __future__ import annotations

import base64
import struct

from starlette.responses import Response

from llmops.serve.protocol import EmbeddingRequest
from llmops.serve.responses import EmbeddingData, EmbeddingList, EmbeddingUsage
from llmops.serve.service import ReplicaService
from llmops.serve.streaming import json_response
from llmops.serve.text_inputs import checked_token_counts


def encode_base64(vector: list[float]) -> str:
    """Little-endian float32, base64: what OpenAI's clients decode."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


async def embeddings(service: ReplicaService, body: EmbeddingRequest) -> Response:
    service.adapter_for(body.model)
    texts = body.texts
    tokens = sum(count or 0 for count in await checked_token_counts(service, texts))
    vectors = await service.backend.embed(texts)
    data = [
        EmbeddingData(index=i, embedding=encode_base64(v) if body.encoding_format == "base64" else v)
        for i, v in enumerate(vectors)
    ]
    service.metrics.record_usage(tokens, 0)
    answer = EmbeddingList(
        data=data, model=body.model, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
    )
    return json_response(answer)
