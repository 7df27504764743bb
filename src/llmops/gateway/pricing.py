"""What a request costs: tokens at per-model prices, or engine seconds at a configured rate.

Self-hosted replicas report their engine time in the ``x-engine-seconds`` response header; when
they do not, the gateway's measured time at the replica is used, so a priced model never costs
zero by accident. The worst case (before forwarding) assumes the whole ``max_tokens`` and, for
time-priced models, the whole total timeout.
"""

from __future__ import annotations

from collections.abc import Mapping

from llmops.gateway.config import PriceConfig

ENGINE_SECONDS_HEADER = "x-engine-seconds"


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token) for limits and reservations before usage is known."""
    return max(1, len(text) // 4)


def worst_case_prompt_tokens(text: str, messages: int) -> int:
    """An upper bound on prompt tokens: byte-level tokenizers make at most one token per byte, and
    chat templates add a few per message."""
    return len(text.encode()) + 8 * messages + 16


def request_cost(
    price: PriceConfig, prompt_tokens: int, completion_tokens: int, engine_seconds: float
) -> float:
    if price.free:
        return 0.0
    return (
        price.input_usd_per_1k_tokens * prompt_tokens / 1000
        + price.output_usd_per_1k_tokens * completion_tokens / 1000
        + price.usd_per_engine_second * engine_seconds
    )


def worst_case_cost(price: PriceConfig, prompt_tokens: int, max_tokens: int, total_timeout_s: float) -> float:
    return request_cost(price, prompt_tokens, max_tokens, total_timeout_s)


def engine_seconds(headers: Mapping[str, str], measured_s: float) -> float:
    value = headers.get(ENGINE_SECONDS_HEADER)
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    return measured_s
