"""``POST /v1/classify``: an encoder classifier's label of each text, its probability, and the
probability of every label (the shape of vLLM's ``/classify``, probabilities keyed by label).

Only a backend with a classification head answers; a decoder refuses with a 400 naming ``model``.
"""

from __future__ import annotations

import time
import uuid

from starlette.responses import Response

from llmops.serve.protocol import ClassifyRequest
from llmops.serve.responses import ClassificationData, ClassificationList, EmbeddingUsage
from llmops.serve.service import ReplicaService
from llmops.serve.streaming import json_response
from llmops.serve.text_inputs import checked_token_counts


async def classify(service: ReplicaService, body: ClassifyRequest) -> Response:
    service.adapter_for(body.model)
    await checked_token_counts(service, body.texts)
    results = await service.backend.classify(body.texts)
    data = [
        ClassificationData(index=i, label=r.label, score=r.scores[r.label], probs=r.scores)
        for i, r in enumerate(results)
    ]
    tokens = sum(r.prompt_tokens for r in results)
    service.metrics.record_usage(tokens, 0)
    answer = ClassificationList(
        id=f"classify-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=body.model,
        data=data,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )
    return json_response(answer)
