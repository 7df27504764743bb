"""The inference engine: sampling, scheduling, paged KV cache, model runner, and backends.

Owns generation. Knows nothing of keys, tenants, HTTP or the gateway: it takes a local model
directory and typed requests (resolving a registry reference is the caller's job).
Must not import: ``gateway``, ``security``, ``serve``, or any web framework.

Entry points (import them from their modules; importing this package stays cheap, no torch):
``types`` (the ``Backend`` contract and its messages), ``config.EngineConfig``,
``transformers_backend.TransformersBackend`` (in-process continuous batching),
``openai_backend.OpenAIBackend`` (any remote OpenAI-compatible server, needs httpx) and
``vllm_backend.VLLMBackend`` (a supervised vLLM replica from its own environment).

One engine step is schedule → run → postprocess: ``scheduler`` (continuous batching, chunked
prefill, preemption) over ``block_manager`` (paged KV blocks, prefix caching), ``model_runner``
with ``paged_attention`` (one varlen forward through transformers' AttentionInterface),
``sampler``, then ``llm_engine`` postprocessing; ``engine_loop`` runs steps on a thread and feeds
asyncio consumers; ``output_processor`` and ``detokenizer`` make text and apply stop strings.
"""
