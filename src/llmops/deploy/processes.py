"""Replica processes on this machine: the command a backend runs, ports, liveness of a pid that may
not be our child (an adopted replica), resident memory, HTTP probes and the numbers of /metrics.

A replica is identified by its pid *and* the kernel's start time of that pid (``/proc/PID/stat``
field 22), so a recycled pid is never mistaken for the replica that once had it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict

from llmops.deploy.spec import DeploymentSpec, TransformersBackend, VLLMBackend
from llmops.errors import Conflict

_LIVE_METRICS = {
    "llmops_http_requests_in_flight": "in_flight",
    "llmops_engine_requests_running": "running",
    "llmops_engine_requests_waiting": "waiting",
    "llmops_engine_kv_cache_usage_ratio": "kv_cache_usage",
    "llmops_engine_generation_tokens": "generated_tokens",
    "llmops_prompt_tokens": "prompt_tokens",
}


class ReplicaRecord(BaseModel):
    """One replica as the supervisor persists it (in the deployment's lifecycle run)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    track: str
    model: str
    model_version: str
    host: str
    port: int | None = None
    url: str
    pid: int | None = None
    pid_started: int | None = None  # /proc start time of pid
    state: str = "starting"
    restarts: int = 0
    failures: int = 0  # consecutive failed starts (reset once up stable_after_s)
    started_at: float | None = None  # wall-clock epoch seconds
    next_start_at: float | None = None
    detail: str | None = None
    log: str | None = None


def proc_start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: fields after its closing parenthesis
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19]) if fields[0] != "Z" else None


def is_running(record: ReplicaRecord) -> bool:
    """The replica's process still runs (and is the same process, not a recycled pid)."""
    if record.pid is None:
        return False
    started = proc_start_time(record.pid)
    return started is not None and started == record.pid_started


def resident_mb(pid: int) -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(host: str, wanted: int | None, replica: str) -> int:
    """``wanted`` when it is free (``Conflict`` naming the address otherwise), else a free port."""
    if wanted is not None:
        if not port_free(host, wanted):
            raise Conflict(
                f"port {host}:{wanted} for replica {replica} is in use; free it or change network.base_port",
                code="port_in_use",
            )
        return wanted
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def replica_command(spec: DeploymentSpec, model_version: str, local_dir: Path | None, port: int) -> list[str]:
    """The command line of one replica of ``spec`` serving ``model_version``."""
    host, backend = spec.network.host, spec.backend
    if isinstance(backend, VLLMBackend):
        assert local_dir is not None
        command = [str(backend.python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(local_dir)]
        command += ["--host", host, "--port", str(port), "--served-model-name", spec.served_model]
        if backend.max_model_len:
            command += ["--max-model-len", str(backend.max_model_len)]
        return command + list(backend.extra_args)
    return [sys.executable, "-m", "llmops", *replica_args(spec, model_version, host, port)]


def replica_args(spec: DeploymentSpec, model_version: str, host: str, port: int) -> list[str]:
    """The ``llmops replica ...`` arguments (after ``llmops``) of one transformers replica of ``spec``;
    the same on every target (a local process, a container)."""
    backend = spec.backend
    assert isinstance(backend, TransformersBackend)
    placement = {"device", "dtype"}
    engine = backend.engine.model_dump(exclude={"threads", *placement}, exclude_unset=True)
    args = ["replica", "--model", model_version, "--host", host]
    args += ["--port", str(port), "--threads", str(spec.resources.threads)]
    args += ["--device", backend.engine.device, "--dtype", backend.engine.dtype]
    args += ["--served-model-name", spec.served_model, "--max-n", str(backend.max_n)]
    if backend.request_timeout_s:
        args += ["--request-timeout", str(backend.request_timeout_s)]
    if engine:
        args += ["--engine-json", json.dumps(engine)]
    return [*args, "--log-level", "warning"]


def launch(command: list[str], env: dict[str, str], log_path: Path) -> tuple[int, int | None]:
    """Start a replica in its own session (it outlives the supervisor); returns pid and start time."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return process.pid, proc_start_time(process.pid)


def reap() -> None:
    """Collect exited children (replicas this process started) so they do not linger as zombies."""
    with contextlib.suppress(ChildProcessError):
        while True:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return


def stop(record: ReplicaRecord, grace_s: float) -> None:
    """SIGTERM the replica's process group (uvicorn finishes in-flight requests), SIGKILL after grace."""
    if not is_running(record):
        return
    assert record.pid is not None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        reap()
        if not is_running(record):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(record.pid, signal.SIGKILL)
    for _ in range(50):
        reap()
        if not is_running(record):
            return
        time.sleep(0.1)


def probe(url: str, timeout_s: float) -> bool:
    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def live_metrics(url: str, timeout_s: float = 2.0) -> dict[str, float]:
    """A few live numbers from a replica's /metrics (empty when it does not answer)."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=timeout_s).text
    except httpx.HTTPError:
        return {}
    numbers: dict[str, float] = {"requests": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "llmops_http_requests_total" and sample.labels.get("route", "").startswith(
                "/v1/"
            ):
                numbers["requests"] += sample.value
            key = _LIVE_METRICS.get(sample.name) or _LIVE_METRICS.get(sample.name.removesuffix("_total"))
            if key is not None:
                numbers[key] = sample.value
    return numbers
