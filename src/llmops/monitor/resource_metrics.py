"""Resource metrics of a replica or gateway process: CPU, memory, file descriptors, GPU.

``register_resource_collectors`` adds prometheus-client's ``ProcessCollector`` (``process_*``: CPU
seconds, resident and virtual memory, open and maximum file descriptors, start time) and
``PlatformCollector`` (``python_info``) to a registry, and ``GpuCollector`` (``llmops_gpu_*``).

Gateway workers in prometheus-client's multiprocess mode: a scrape reaches one worker, and a
``ProcessCollector`` there would describe that worker only (and none of it survives the
multiprocess aggregation, which reads only the value files). ``WorkerProcessCollector`` instead
reads, at scrape time, ``/proc`` of every live process that has value files in the shared folder
(their names end in ``_<pid>.db``) and labels each sample with its ``pid``, the way the multiprocess
gauges are labelled. Reading ``/proc`` at scrape time was chosen over per-pid gauges that each
worker refreshes: those would be as old as the last refresh, and a dead worker's would linger; a
worker that died is simply not read. Sum them with ``sum without (pid) (...)``.

GPU gauges are read only where torch is already imported (a replica's engine; the gateway never
imports it) and this process has initialised CUDA; elsewhere the families are described with no
samples, so a CPU machine shows none rather than zeros.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

GPU_MEMORY_USED = "llmops_gpu_memory_used_bytes"
GPU_MEMORY_TOTAL = "llmops_gpu_memory_total_bytes"
GPU_MEMORY_ALLOCATED = "llmops_gpu_memory_allocated_bytes"
GPU_MEMORY_RESERVED = "llmops_gpu_memory_reserved_bytes"
GPU_UTILIZATION = "llmops_gpu_utilization_ratio"

# Families every process's resource collectors produce (an in-process replica's are the gateway's).
RESOURCE_FAMILY_PREFIXES = ("process_", "python_info", "llmops_gpu_")

_PID_FILE = re.compile(r"_(\d+)\.db$")


def register_resource_collectors(registry: CollectorRegistry) -> None:
    """This process's CPU, memory and file descriptors, its platform, and its GPUs."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(GpuCollector())


def register_worker_resource_collectors(registry: CollectorRegistry, multiprocess_dir: Path) -> None:
    """Like ``register_resource_collectors`` for gateway workers sharing ``multiprocess_dir``."""
    registry.register(WorkerProcessCollector(multiprocess_dir))
    PlatformCollector(registry=registry)
    registry.register(GpuCollector())


def worker_pids(multiprocess_dir: Path) -> list[int]:
    """Live processes with value files in ``multiprocess_dir`` (every worker creates its own)."""
    pids = {
        int(match.group(1))
        for file in multiprocess_dir.glob("*.db")
        if (match := _PID_FILE.search(file.name))
    }
    return sorted(pid for pid in pids if _alive(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkerProcessCollector(Collector):
    """``process_*`` of every live worker, read from ``/proc`` at scrape time, labelled by ``pid``."""

    def __init__(self, multiprocess_dir: Path, proc: str = "/proc") -> None:
        self.multiprocess_dir = Path(multiprocess_dir)
        self.proc = proc

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for pid in worker_pids(self.multiprocess_dir):
            reader = ProcessCollector(pid=_constant(pid), proc=self.proc, registry=None)
            for family in reader.collect():  # nothing when the worker exited meanwhile
                target = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type, family.unit)
                )
                target.samples += [s._replace(labels={**s.labels, "pid": str(pid)}) for s in family.samples]
        yield from merged.values()


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


class GpuCollector(Collector):
    """Device memory and utilisation per CUDA device, from torch; no samples without a GPU."""

    def __init__(self, torch_module: ModuleType | None = None) -> None:
        self._torch = torch_module

    def collect(self) -> Iterator[Metric]:
        families = {
            GPU_MEMORY_USED: "Device memory in use by every process (total minus free), in bytes.",
            GPU_MEMORY_TOTAL: "Device memory, in bytes.",
            GPU_MEMORY_ALLOCATED: "Device memory held by this process's tensors, in bytes.",
            GPU_MEMORY_RESERVED: "Device memory reserved by this process's caching allocator, in bytes.",
            GPU_UTILIZATION: "Share of the last sample period the device was busy (0 to 1; needs NVML).",
        }
        gauges = {name: GaugeMetricFamily(name, doc, labels=["device"]) for name, doc in families.items()}
        cuda = self._cuda()
        if cuda is not None:
            _read_devices(cuda, gauges)
        yield from gauges.values()

    def _cuda(self) -> ModuleType | None:
        torch = self._torch if self._torch is not None else sys.modules.get("torch")
        cuda = getattr(torch, "cuda", None)
        try:
            # is_initialized: a process that never used its GPU reports none (and creates no context)
            return cuda if cuda is not None and cuda.is_available() and cuda.is_initialized() else None
        except Exception:  # a scrape must not fail because the driver is unwell
            return None


def _read_devices(cuda: ModuleType, gauges: dict[str, GaugeMetricFamily]) -> None:
    for index in range(cuda.device_count()):
        device = str(index)
        free, total = cuda.mem_get_info(index)
        gauges[GPU_MEMORY_USED].add_metric([device], float(total - free))
        gauges[GPU_MEMORY_TOTAL].add_metric([device], float(total))
        gauges[GPU_MEMORY_ALLOCATED].add_metric([device], float(cuda.memory_allocated(index)))
        gauges[GPU_MEMORY_RESERVED].add_metric([device], float(cuda.memory_reserved(index)))
        utilization = _utilization(cuda, index)
        if utilization is not None:
            gauges[GPU_UTILIZATION].add_metric([device], utilization)


def _utilization(cuda: ModuleType, index: int) -> float | None:
    try:
        return float(cuda.utilization(index)) / 100.0
    except Exception:  # torch reads it through NVML (pynvml), which may be missing
        return None
