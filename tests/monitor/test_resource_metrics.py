"""Resource metrics: process CPU and memory, platform, and GPU gauges (absent without a GPU)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from llmops.gateway.metrics import GatewayMetrics, prepare_multiprocess_dir
from llmops.monitor.resource_metrics import (
    GPU_MEMORY_USED,
    GPU_UTILIZATION,
    GpuCollector,
    register_resource_collectors,
    worker_pids,
)

PROCESS_SAMPLES = ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds")
GPU = 1 << 30


class FakeCuda(ModuleType):
    """``torch.cuda`` on a machine with two devices; NVML answers for the first one only."""

    def __init__(self, available: bool = True) -> None:
        super().__init__("torch.cuda")
        self.available = available

    def is_available(self) -> bool:
        return self.available

    def is_initialized(self) -> bool:
        return self.available

    def device_count(self) -> int:
        return 2

    def mem_get_info(self, index: int) -> tuple[int, int]:
        return (80 - 10 * (index + 1)) * GPU, 80 * GPU

    def memory_allocated(self, index: int) -> int:
        return 5 * GPU

    def memory_reserved(self, index: int) -> int:
        return 6 * GPU

    def utilization(self, index: int) -> int:
        if index == 1:
            raise RuntimeError("pynvml does not seem to be installed")
        return 42


def fake_torch(available: bool = True) -> ModuleType:
    torch = ModuleType("torch")
    torch.cuda = FakeCuda(available)  # type: ignore[attr-defined]
    return torch


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_process_exports_its_cpu_memory_and_platform() -> None:
    registry = CollectorRegistry()
    register_resource_collectors(registry)
    text = generate_latest(registry).decode()
    names = {name for name, _ in samples(text)}
    assert set(PROCESS_SAMPLES) | {"python_info"} <= names
    assert samples(text)[("process_resident_memory_bytes", ())] > 1 << 20


def test_without_a_gpu_the_gpu_families_have_no_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    for torch in (None, fake_torch(available=False)):
        if torch is None:
            monkeypatch.delitem(sys.modules, "torch", raising=False)
        else:
            monkeypatch.setitem(sys.modules, "torch", torch)
        registry = CollectorRegistry()
        register_resource_collectors(registry)
        text = generate_latest(registry).decode()
        assert f"# TYPE {GPU_MEMORY_USED} gauge" in text  # described, so dashboards know the name
        assert not [name for name, _ in samples(text) if name.startswith("llmops_gpu_")]


def test_gpu_gauges_read_torch_cuda_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", fake_torch())
    registry = CollectorRegistry()
    register_resource_collectors(registry)
    exposition = generate_latest(registry)
    _promtool_accepts(exposition)
    found = samples(exposition.decode())
    assert found[(GPU_MEMORY_USED, (("device", "0"),))] == 10 * GPU
    assert found[(GPU_MEMORY_USED, (("device", "1"),))] == 20 * GPU
    assert found[("llmops_gpu_memory_total_bytes", (("device", "1"),))] == 80 * GPU
    assert found[("llmops_gpu_memory_allocated_bytes", (("device", "0"),))] == 5 * GPU
    assert found[("llmops_gpu_memory_reserved_bytes", (("device", "0"),))] == 6 * GPU
    assert found[(GPU_UTILIZATION, (("device", "0"),))] == pytest.approx(0.42)
    assert (GPU_UTILIZATION, (("device", "1"),)) not in found  # NVML missing: absent, not zero


def test_a_gpu_collector_survives_a_failing_driver() -> None:
    torch = fake_torch()
    torch.cuda.is_available = lambda: (_ for _ in ()).throw(RuntimeError("driver gone"))  # type: ignore[attr-defined]
    families = list(GpuCollector(torch).collect())
    assert families and all(not family.samples for family in families)


WORKER = """
import sys, time
from llmops.gateway.metrics import GatewayMetrics
metrics = GatewayMetrics()
metrics.requests.labels(deployment="bot", status="200").inc()
print("ready", flush=True)
if sys.argv[1] == "stay":
    time.sleep(120)
"""


def _promtool_accepts(exposition: bytes) -> None:
    promtool = shutil.which("promtool")  # Debian's prometheus package; .ci/run installs it
    if promtool is not None:
        checked = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True)
        assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def test_gateway_workers_process_metrics_are_per_live_pid(tmp_path: Path) -> None:
    folder = prepare_multiprocess_dir(tmp_path / "metrics")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    exited = subprocess.run(
        [sys.executable, "-c", WORKER, "exit"], env=env, check=True, timeout=120, capture_output=True
    )
    assert exited.stdout.strip() == b"ready"
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, "stay"], env=env, stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == b"ready"
        live = sorted(worker.pid for worker in workers)
        assert worker_pids(folder) == live  # the worker that exited left files, but is not read
        exposition = GatewayMetrics(folder).render()
        _promtool_accepts(exposition)
        found = samples(exposition.decode())
        for name in PROCESS_SAMPLES:
            assert sorted(int(dict(labels)["pid"]) for n, labels in found if n == name) == live, name
        assert [n for n, _ in found].count("python_info") == 1
        assert found[("llmops_gateway_requests_total", (("deployment", "bot"), ("status", "200")))] == 3.0
        workers[0].kill()
        workers[0].wait(timeout=30)
        deadline = time.monotonic() + 30
        while workers[0].pid in worker_pids(folder) and time.monotonic() < deadline:
            time.sleep(0.05)
        after = samples(GatewayMetrics(folder).render().decode())
        pids = {dict(labels)["pid"] for n, labels in after if n == "process_resident_memory_bytes"}
        assert pids == {str(workers[1].pid)}
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(timeout=30)


def test_one_gateway_process_reports_itself_once_with_an_in_process_replica() -> None:
    metrics = GatewayMetrics()
    replica = CollectorRegistry()
    register_resource_collectors(replica)  # the replica's registry, in the gateway's process
    metrics.include(replica, {"replica": "in-process:tiny@1"})
    found = samples(metrics.render().decode())
    rss = [labels for name, labels in found if name == "process_resident_memory_bytes"]
    assert rss == [()]  # this process, once, without a pid or replica label
    assert [name for name, _ in found].count("python_info") == 1
