"""Monitoring: drift detection, online evaluation, feedback, alerting, and their Prometheus metrics.

Owns:

* ``drift`` / ``drift_features`` / ``drift_stats`` / ``drift_config``: reference profiles of
  prompts (length, vocabulary, label mix, embeddings) and their comparison with a window (PSI,
  Kolmogorov-Smirnov, chi-square, standardised mean shift, MMD); ``drift_monitor``: rolling windows
  per model version checked on demand or on a schedule; ``drift_sources``: prompts from datasets and
  the request log, profiles as artifacts;
* ``alert_rules`` / ``alerts`` / ``alert_history`` / ``webhook``: alert rules (YAML), firing and
  resolved state, de-duplicated webhook notifications with retries, alert history;
* ``online_eval`` / ``online_eval_queue``: reference-free scoring of a sampled share of traffic;
* ``feedback``: the feedback message and per-version aggregates; ``feedback_store``: feedback
  attached to its request (recent in memory, or in the request log) and its row;
* ``request_search`` / ``request_export``: the request log searched, shown in full and exported
  (JSONL, Parquet) with feedback and online scores joined;
* ``store_writer``: the batched background writer of monitoring rows; ``alert_store``,
  ``drift_store``, ``online_eval_store``: alerts, drift references and reports, online scores in
  the store;
* ``metrics``: every ``llmops_drift_*``, ``llmops_online_eval_*``, ``llmops_feedback_*``,
  ``llmops_alert*``, ``llmops_key_budget_*`` and ``llmops_monitor_store_*`` metric; ``service``:
  all of it wired together.

May import ``store``, ``data``, ``evals``, ``errors`` and ``settings``. Must not import ``serve``,
``gateway``, ``deploy``, ``cli`` or anything else above the domain layer: the gateway feeds this
package typed values and mounts its metrics.
"""
