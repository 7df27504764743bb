"""deploy/monitoring and docs/monitoring.md use only metrics that llmops really exports.

Every ``llmops_*``, ``process_*`` and ``python_info`` name in the Grafana dashboard's and the
Prometheus rules' PromQL, and in the in-process alert rules, must be a sample name of a metric
the replica (serve), the gateway (when its metrics module exists) or the monitor registers:
counters as ``*_total``, histograms as ``*_bucket``/``*_sum``/``*_count``, summaries as ``*_sum``/``*_count``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from llmops.engine.types import EngineStats
from llmops.monitor.alert_rules import load_alert_rules, parse_alert_rules
from llmops.monitor.metrics import MonitorMetrics
from llmops.serve.metrics import ServeMetrics

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "deploy" / "monitoring"
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_NAME = re.compile(r"\b(?:llmops_[A-Za-z0-9_:]+|process_[a-z_]+|python_info)\b")
# Resource metrics keep prometheus-client's standard names (every exporter's dashboards know them).
STANDARD = ("process_", "python_info")
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "gauge": ("",),
}


class _StatsOnly:
    """Just enough of a backend for ``ServeMetrics``: its scrape-time engine stats."""

    def stats(self) -> EngineStats:
        return EngineStats(kv_blocks_total=4)


def _registries() -> Iterator[CollectorRegistry]:
    yield ServeMetrics(_StatsOnly()).registry  # type: ignore[arg-type]
    if importlib.util.find_spec("llmops.gateway.metrics") is not None:
        yield importlib.import_module("llmops.gateway.metrics").GatewayMetrics().registry
    yield MonitorMetrics().registry


def exported_sample_names() -> set[str]:
    """Every sample name the metrics classes can emit (labelled metrics emit none until used)."""
    names: set[str] = set()
    for registry in _registries():
        for family in registry.collect():
            names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def metric_names(promql: str) -> set[str]:
    """``llmops_*`` identifiers of a PromQL expression (label values in quotes are ignored)."""
    return set(_NAME.findall(_QUOTED.sub('""', promql)))


def _dashboard_queries(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition", "query") and isinstance(value, str):
                yield value
            else:
                yield from _dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_queries(item)


def _rule_expressions() -> list[str]:
    data = yaml.safe_load((ASSETS / "prometheus-alerts.yml").read_text())
    return [rule["expr"] for group in data["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return exported_sample_names()


def test_the_exported_names_follow_the_conventions(exported: set[str]) -> None:
    assert "llmops_http_requests_total" in exported
    assert "llmops_time_to_first_token_seconds_bucket" in exported
    assert "llmops_drift_score" in exported and "llmops_online_eval_score_count" in exported
    assert "llmops_http_requests" not in exported  # a counter is only ever scraped as *_total
    assert all(name.startswith(("llmops_", *STANDARD)) for name in exported)
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"} <= exported
    assert {"llmops_gpu_memory_used_bytes", "llmops_gpu_utilization_ratio"} <= exported


def test_the_extractor_ignores_label_values_and_keeps_suffixes() -> None:
    expr = "sum(rate(llmops_x_total{job=\"llmops_fake\", a='llmops_y'}[5m])) / llmops_z_bucket"
    assert metric_names(expr) == {"llmops_x_total", "llmops_z_bucket"}


def test_dashboard_queries_use_only_exported_metrics(exported: set[str]) -> None:
    dashboard = json.loads((ASSETS / "grafana-dashboard.json").read_text())
    used = set().union(*(metric_names(query) for query in _dashboard_queries(dashboard)))
    assert len(used) >= 20
    assert sorted(used - exported) == []


def test_dashboard_panels_are_well_formed() -> None:
    dashboard = json.loads((ASSETS / "grafana-dashboard.json").read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], f"panel {panel['title']!r} has no query"
            assert all(target["expr"].strip() for target in panel["targets"])


def test_prometheus_rules_use_only_exported_metrics(exported: set[str]) -> None:
    expressions = _rule_expressions()
    used = set().union(*(metric_names(expr) for expr in expressions))
    assert len(used) >= 12
    assert sorted(used - exported) == []


def test_prometheus_rules_cover_the_required_signals() -> None:
    data = yaml.safe_load((ASSETS / "prometheus-alerts.yml").read_text())
    rules = [rule for group in data["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    for needed in ("ErrorRate", "LatencyP95", "TTFT", "Budget", "Drift", "OnlineEval"):
        assert any(needed in name for name in names), needed
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert rule["labels"]["severity"] in {"warning", "critical"}


def test_in_process_alert_rules_load_and_read_exported_samples(exported: set[str]) -> None:
    rules = load_alert_rules(ASSETS / "llmops-alert-rules.yaml")
    assert rules.rules and sorted({rule.metric for rule in rules.rules} - exported) == []


def test_the_alert_rule_example_in_the_docs_is_valid(exported: set[str]) -> None:
    text = (ROOT / "docs" / "monitoring.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    rule_blocks = [yaml.safe_load(block) for block in blocks if "rules:" in block and "groups:" not in block]
    assert rule_blocks, "docs/monitoring.md should show an alert rules example"
    for block in rule_blocks:
        rules = parse_alert_rules(block)
        assert sorted({rule.metric for rule in rules.rules} - exported) == []
    documented = set(re.findall(r"`(llmops_[a-z0-9_]+)`", text))
    assert len(documented) >= 10 and sorted(documented - exported) == []


def test_the_python_examples_in_the_docs_run() -> None:
    text = (ROOT / "docs" / "monitoring.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/monitoring.md", "exec"), {})
