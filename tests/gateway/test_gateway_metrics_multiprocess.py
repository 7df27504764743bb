"""Multiprocess metrics: two worker processes count requests, one /metrics shows their sum."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from llmops.gateway.metrics import GatewayMetrics, prepare_multiprocess_dir

WORKER = """
from llmops.gateway.metrics import GatewayMetrics
from llmops.monitor.metrics import MonitorMetrics
metrics = GatewayMetrics()
MonitorMetrics(metrics.registry).feedback.labels(model_version="v1", rating="positive").inc()
metrics.requests.labels(deployment="bot", status="200").inc({count})
metrics.latency.labels(deployment="bot").observe(0.2)
metrics.log_queue.set({count})
"""


def test_workers_metrics_are_aggregated(tmp_path: Path) -> None:
    folder = prepare_multiprocess_dir(tmp_path / "metrics")
    (folder / "counter_999.db").write_bytes(b"stale")  # a previous run's file is removed
    assert list(prepare_multiprocess_dir(folder).iterdir()) == []
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    for count in (2, 3):
        subprocess.run([sys.executable, "-c", WORKER.format(count=count)], env=env, check=True, timeout=120)
    text = GatewayMetrics(folder).render().decode()
    assert 'llmops_gateway_requests_total{deployment="bot",status="200"} 5.0' in text
    assert 'llmops_gateway_latency_seconds_count{deployment="bot"} 2.0' in text
    assert 'llmops_feedback_total{model_version="v1",rating="positive"} 2.0' in text
    assert text.count("llmops_gateway_request_log_queue{pid=") == 2  # gauges stay per worker
    promtool = shutil.which("promtool")
    if promtool is not None:
        checked = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
        assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
