"""A replica's real /metrics shows its process's CPU and memory, and GPU gauges only with a GPU."""

from __future__ import annotations

import sys
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families


def test_replica_metrics_include_process_resources(make_replica: Callable[..., object]) -> None:
    replica = make_replica()
    text = httpx.get(f"{replica.url}/metrics", timeout=30).text  # type: ignore[attr-defined]
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds", "python_info"):
        assert families[name].samples, name
    assert families["process_resident_memory_bytes"].samples[0].value > 1 << 20
    assert "llmops_gpu_memory_used_bytes" in families  # described for dashboards...
    torch = sys.modules.get("torch")
    uses_gpu = torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()
    assert bool(families["llmops_gpu_memory_used_bytes"].samples) == uses_gpu  # ...samples with CUDA only
