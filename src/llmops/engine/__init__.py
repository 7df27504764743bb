"""The inference engine: sampling, scheduling, paged KV cache, model runner, and backends.

Owns generation. Knows nothing of keys, tenants, HTTP or the gateway: it takes a local model
directory and typed requests (resolving a registry reference is the caller's job).
Must not import: ``gateway``, ``security``, ``serve``, or any web framework.
"""
