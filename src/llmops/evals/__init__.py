"""Evaluation: suites, metrics, LLM judges, paired comparison statistics, gates and reports.

This package owns the pure parts of evaluating a model:

* ``suite``: the suite YAML as pydantic models (dataset fields, generation params, metrics, gates,
  bootstrap settings), ``load_suite`` and ``validate_suite_against_fields`` (pre-flight checks);
* ``metric_specs`` / ``metrics`` / ``metrics_*`` / ``judge``: the metric kinds, their registry, and
  per-example scoring into typed ``MetricResult`` values (``results``);
* ``scoring``: a dataset row plus a prediction into a scored ``ExampleOutcome``;
* ``summary`` and ``stats``: run scores with bootstrap intervals, paired comparisons (McNemar,
  Wilcoxon, paired bootstrap) and verdicts;
* ``gates``: declarative pass/fail checks with the numbers that decided them;
* ``report`` / ``report_html`` / ``svg_plots``: markdown (pull-request comment) and HTML reports.

It imports only ``llmops.errors`` (and ``llmops.settings`` if ever needed) from llmops. It must not
import ``store``, ``registry``, ``tracking``, ``engine``, ``serve``, ``gateway`` or anything above:
the runner that generates predictions, resolves registry aliases to baseline runs and stores
results is wired by the callers (pipelines, CLI), which hand this package typed values.
"""
